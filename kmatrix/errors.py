"""Errors that carry what a user needs to fix them."""


class ConfigError(Exception):
    """An inconsistent or invalid setting, caught before anything runs.

    `symbol` is the Kconfig symbol to change (without the CONFIG_ prefix) and `fix`
    says how, so the message reads: "SWEEP_X_MIN: min 10 >= max 1 (fix: ...)".
    """

    def __init__(self, symbol, problem, fix=None):
        self.symbol, self.problem, self.fix = symbol, problem, fix
        text = f"{symbol}: {problem}"
        if fix:
            text += f" (fix: {fix})"
        super().__init__(text)


class Diverged(Exception):
    """Raised by a workload when training produced a non-finite loss.

    A divergence is a result, not a failure: the driver records status "diverged"
    together with the metrics, the per-step losses and the [step, loss] validation
    losses the exception carries.
    """

    def __init__(self, message, metrics=None, losses=None, val_losses=None, ran_with=None):
        super().__init__(message)
        self.metrics = metrics or {}
        self.losses = list(losses or [])
        self.val_losses = list(val_losses or [])
        self.ran_with = ran_with  # what the cell ran with, as run()'s "ran_with" says
