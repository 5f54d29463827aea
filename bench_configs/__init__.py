"""The configs that ship with hil-eqprop: `hil train NAME` finds them by name."""
