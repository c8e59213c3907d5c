"""Where the repository's templates and a run's artifacts live."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import MnistEdgeError

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = REPO_ROOT / "templates"


def template_env(subdir: str):
    """The one Jinja2 setup every generator uses: strict variables, exact whitespace."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR / subdir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def save_figure(figure, path: Path) -> None:
    """Lay out a matplotlib Figure and write it as a PNG, atomically (no pyplot state)."""
    figure.tight_layout()
    with atomic_write(Path(path)) as handle:
        figure.savefig(handle, format="png", dpi=100)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def os_error_message(exc: OSError, path: str | Path | None = None,
                     action: str = "cannot access") -> str:
    """`<path>: <what> (<why>)` for a failed file-system call."""
    where = path if path is not None else (exc.filename if exc.filename is not None else "")
    why = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {action} ({why})" if where != "" else f"{action} ({why})"


def make_parent(path: Path) -> None:
    """Create `path`'s missing parent folders; a one-line error when that cannot be done."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((a for a in path.parents if a.exists() and not a.is_dir()), None)
        why = f"{blocker} is not a folder" if blocker else (exc.strerror or str(exc))
        raise MnistEdgeError(f"{path}: cannot write ({why})") from exc


def _own_error(exc: BaseException, tmp: Path) -> bool:
    """An OSError from writing the temporary (not from some other file the body touched)."""
    if not isinstance(exc, OSError):
        return False
    return exc.filename is None or str(exc.filename).startswith(str(tmp))


@contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator:
    """Write to a temporary file beside `path`, rename on success, delete on error.

    A crash or an exception never leaves a half-written artifact behind; a failed write
    (read-only folder, missing parent, full disk) is a one-line MnistEdgeError.
    """
    path = Path(path)
    make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise MnistEdgeError(os_error_message(exc, path, "cannot write")) from exc
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 is wrong for shared artifacts
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if _own_error(exc, Path(tmp)):
            raise MnistEdgeError(os_error_message(exc, path, "cannot write")) from exc
        raise


MANIFEST_NAME = "manifest.json"
GENERATOR_PREFIX = "mnist-edge"


def holds_manifest(folder: Path) -> bool:
    """True when `folder` is a real folder holding a manifest.json that mnist-edge wrote."""
    import json

    manifest = Path(folder) / MANIFEST_NAME
    if Path(folder).is_symlink() or manifest.is_symlink() or not manifest.is_file():
        return False
    try:
        doc = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    generator = doc.get("generator") if isinstance(doc, dict) else None
    return isinstance(generator, str) and generator.startswith(GENERATOR_PREFIX)


def write_manifest(folder: Path, fields: dict) -> None:
    """Mark `folder` as mnist-edge output, so a later run may replace it (and only then)."""
    import json

    from . import __version__

    doc = {"generator": f"{GENERATOR_PREFIX} {__version__}", **fields}
    (Path(folder) / MANIFEST_NAME).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def check_output_dir(path: Path, *, force: bool = False, explicit: bool = True,
                     protect: tuple[Path, ...] = ()) -> None:
    """Refuse an output folder whose replacement could destroy something mnist-edge did not write.

    An absent path or an empty folder is always fine. A folder holding our manifest is
    replaced when it is the default output (`explicit=False`) or with `force`. Never: a
    file, a symbolic link, a folder without our manifest, or a folder in `protect` (the run
    folder) or one that contains it.
    """
    path = Path(path)
    if path.is_symlink():
        raise MnistEdgeError(f"{path}: is a symbolic link; give the folder it points to, "
                             "or another output folder")
    if not path.exists():
        return
    if not path.is_dir():
        raise MnistEdgeError(f"{path}: exists and is not a folder; choose another output folder")
    real = path.resolve()
    for guarded in protect:
        guarded = Path(guarded).resolve()
        if real == guarded or real in guarded.parents:
            raise MnistEdgeError(f"{path}: is the run folder or contains it; generated files "
                                 f"need a folder of their own (default: {guarded}/<target>)")
    if not any(path.iterdir()):
        return
    if not holds_manifest(path):
        raise MnistEdgeError(f"{path}: folder is not empty and has no mnist-edge {MANIFEST_NAME}, "
                             "so it is not replaced; choose an empty or new output folder")
    if explicit and not force:
        raise MnistEdgeError(f"{path}: holds an earlier mnist-edge output; pass --force "
                             "(force=True from Python) to replace it")


@contextmanager
def atomic_dir(path: Path, guard: bool = True) -> Iterator[Path]:
    """Build a directory under a private temporary name and swap it in only when complete.

    With `guard`, only an absent path, an empty folder or a folder holding our manifest
    is replaced (`check_output_dir`); `guard=False` is for the scratch folders under
    <run>/build that only mnist-edge writes. The swap is `replace_dir`'s, so a failure at
    any point leaves one complete tree in place, and concurrent builders never share a
    folder while they work in it.
    """
    import shutil

    path = Path(path)
    if guard:
        check_output_dir(path, force=True)
    make_parent(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as exc:
        raise MnistEdgeError(os_error_message(exc, path, "cannot write")) from exc
    try:
        yield tmp
        if guard:
            check_output_dir(path, force=True)  # it may have changed while we built
        replace_dir(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and (
            _own_error(exc, tmp) or str(exc.filename).startswith(str(path))
        ):
            raise MnistEdgeError(os_error_message(exc, path, "cannot write")) from exc
        raise


def replace_dir(tmp: Path, path: Path) -> bool:
    """Rename the finished tree `tmp` to `path`: the old tree aside, the new in, the old deleted.

    Safe against a concurrent process doing the same: when its tree lands between our two
    renames, ours is discarded (the same command built both) and False is returned. A
    failed rename puts the old tree back, so `path` always holds one complete tree.
    """
    import errno
    import shutil

    tmp, path = Path(tmp), Path(path)
    old: Path | None = None
    if path.exists() or path.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        try:
            os.replace(path, old / path.name)
        except FileNotFoundError:  # another process moved it first
            pass
    try:
        os.replace(tmp, path)
        landed = True
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not path.is_dir():
            if old is not None and (old / path.name).exists() and not path.exists():
                os.replace(old / path.name, path)
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process's tree won the race
        landed = False
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return landed


def write_tree(out_dir: Path, files: dict[str, bytes]) -> Path:
    """Write rendered files (name -> bytes) as one folder, atomically, through `atomic_dir`."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return out_dir
