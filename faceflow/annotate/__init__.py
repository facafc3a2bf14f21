"""Annotating a real video: tracking, fitting, rendering the conditioning and flows into a resumable directory."""
