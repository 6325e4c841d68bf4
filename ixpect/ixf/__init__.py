"""IX-F Member Export: fetch, validate, normalise and render it into the monitor's expected state.

Pipeline: fetch.load (bytes -> dict) -> schema.check (vendored Euro-IX schema of the declared
version) -> normalise.Export (flat, clean address records) -> render (config + member table).
"""


class IxfError(Exception):
    """A failure that must leave the rendered files untouched; the message names what is wrong."""


class Problems:
    """Warnings grouped by kind, so that 777 instances of one defect make one readable line."""

    def __init__(self):
        self.kinds: dict[str, list[str]] = {}

    def add(self, kind: str, detail: str) -> None:
        self.kinds.setdefault(kind, []).append(detail)

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def lines(self, examples: int = 3) -> list[str]:
        out = []
        for kind, details in self.kinds.items():
            shown = "; ".join(details[:examples])
            more = f" (and {len(details) - examples} more)" if len(details) > examples else ""
            count = f"{len(details)}x " if len(details) > 1 else ""
            out.append(f"{count}{kind}: {shown}{more}")
        return out
