"""Recognition: the PP-ShiTuV2 engine (engine/, no Django) and the recognise API around it."""
