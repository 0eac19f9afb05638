"""Pure core of RELIEF: model, parameter groups, data, metrics, time/energy model, configuration (no Flower)."""
