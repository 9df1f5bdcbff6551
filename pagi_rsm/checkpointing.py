"""What a run's `tf.train.Checkpoint` holds of a Keras 3 model: every variable, by its path.

TensorFlow's object-based checkpoints save what they can reach through tracked attributes. A
Keras 3 model's layers held in Python lists are not such children, so ``Checkpoint(model=m)``
saves only part of the model (for a classifier with its hidden layers in a list: only the
head). `model_items` lists every variable by its path instead, the seed generators' states
included, so a resumed run restores all weights, statistics and stream states and draws the
same dropout masks as an uninterrupted run.
"""


def variables_by_path(variables):
    """{path with "/" as ".": variable}; RuntimeError if two variables share a path."""
    out = {v.path.replace("/", "."): v for v in variables}
    if len(out) != len(variables):
        paths = sorted(v.path for v in variables)
        twice = sorted({p for p in paths if paths.count(p) > 1})
        raise RuntimeError(f"variable paths of the model are not unique: {twice}")
    return out


def model_items(model, **optimizers):
    """Trackables for a `tf.train.Checkpoint` of `model` and its optimisers.

    Returns:
      ``{"weights": every weight by path, "random_state": the seed generators' states (when
      the model has any), **optimizers}``; optimisers given as None are left out.
    """
    items = {"weights": variables_by_path(list(model.weights))}
    random_state = seed_generator_states(model)
    if random_state:
        items["random_state"] = random_state
    items.update({name: opt for name, opt in optimizers.items() if opt is not None})
    return items


def seed_generator_states(model):
    """{key: state variable} of every seed generator of `model` and its layers.

    A generator's own variable path comes from a process-wide counter (``seed_generator_3``),
    so it differs between two models built in one process; the key here is the path of layer
    names from `model` down to the generator's owner and the generator's index there, which a
    model rebuilt from the same code reproduces.
    """
    states, seen = {}, set()

    def walk(layer, prefix):
        for i, generator in enumerate(getattr(layer, "_seed_generators", ())):
            if id(generator) not in seen:
                seen.add(id(generator))
                states[f"{prefix}.seed_generator_{i}"] = generator.state
        for child in getattr(layer, "_layers", ()):
            walk(child, f"{prefix}.{child.name}")

    walk(model, model.name)
    return states
