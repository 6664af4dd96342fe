"""One router per resource; each declares the scope it needs through ``deps``."""
