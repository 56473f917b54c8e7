"""The Qt layer: widgets and the engine worker. Only schedules work and shows results."""
