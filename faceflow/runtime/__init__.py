"""The program's surroundings: asset search, thread settings, provenance of outputs, command-line flags
from dataclass fields."""
