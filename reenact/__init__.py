"""reenact: turns a target video into conditioning (NMFC renders and eye sketches), trains
per-subject models and performs self, face and head reenactment. Built in a later issue."""
