"""Media: reading and writing video, label PNGs and the one DAVIS palette."""
