"""The zoo's model names, without torch: the CLI lists them for `--help` and checks
`--model` before anything heavy is imported. `models.ZOO` must use exactly these."""

MODEL_NAMES = ("edge", "gapnet", "simplecnn", "kerascnn", "lenet5", "mlp", "tiny")
DEFAULT_MODEL = "edge"
