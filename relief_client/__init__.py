"""RELIEF Flower ClientApp: trains its assigned parameter groups and measures time and energy."""
