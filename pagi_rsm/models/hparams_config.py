"""`HparamsConfig`: the Keras config of a model that is built from its hparams alone."""


class HparamsConfig:
    """Mixin for a `keras.Model` whose constructor takes its hparams (``self.hparams``) and
    `name`: `get_config` returns them and `from_config` rebuilds the model from them, so a
    `.keras` file restores it (its weights, stream state included, are loaded by Keras)."""

    def get_config(self):
        return {**self.hparams, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
