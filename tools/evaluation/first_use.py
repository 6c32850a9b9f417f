"""One process trains a judge on first use: a file lock beside its folder, so parallel evaluations (or test workers)
wait for the first one's save instead of training the same model twice and writing over each other."""
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock


@contextmanager
def first_use_lock(target: Path):
    """Held while `target` (a judge's folder or file) is checked again and, if still missing, trained and saved."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        yield
