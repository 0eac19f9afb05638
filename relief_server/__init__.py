"""RELIEF Flower ServerApp and strategies."""
