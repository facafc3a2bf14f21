"""Finding and following the face in real frames: landmarks and tracking, registration to the template,
eyes, the dense correspondence, video fitting."""
