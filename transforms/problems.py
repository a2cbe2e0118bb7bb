"""Problems: what a transform reports instead of raising on bad *data*.

Configuration errors raise when a spec is built; data errors become :class:`Problem` values
and, in the pipeline, quarantine rows. A reader that cannot read a file raises
:class:`ItemError`, which the stage turns into a problem with the same code.

Problem details must never contain raw file names, paths or identifiers: they are written
to ``quarantine.parquet``, an output. The stage logs the raw path locally instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One reason an item or sample cannot be published.

    Attributes:
        code: short machine-readable reason, ``snake_case`` (``"flat_lead"``, ``"truncated_file"``).
        detail: a sentence for people; no identifiers, names or paths.
    """

    code: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}


class ItemError(Exception):
    """A raw item cannot be read or transformed; carries a problem code.

    The message may name the file (it is for the local log); ``problem`` is what goes
    to quarantine and must not.
    """

    def __init__(self, code: str, detail: str, *, path: str | None = None) -> None:
        self.problem = Problem(code, detail)
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{detail} [{code}]")
