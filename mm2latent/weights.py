"""Registry of the pretrained weights MM2Latent uses, their on-disk cache and integrity checks.

Each name (`arch.tag`) maps to a `WeightSpec` in `WEIGHTS`: official URL, file name, format and,
where upstream publishes it, the sha256 and size. Nothing here downloads implicitly: `resolve`
only finds and checks a cached file; `fetch` is the one function that touches the network.

Cache directory: `cache_dir` argument, else `$MM2LATENT_CACHE`, else
`$XDG_CACHE_HOME/mm2latent`, else `~/.cache/mm2latent`.

Digests. Entries with `sha256=None` get their digest recorded in `<cache>/recorded_sha256.json`
at the first verified fetch (or, for manual downloads, at first use: trust on first use), and
every later use checks against it.

Hashing policy (cheap repeats). `resolve` checks the size every time. For the sha256 it keeps
a stamp per file in the same JSON: (size, mtime_ns, ctime_ns, sha256) of the last full hash.
If the file's size, mtime_ns and ctime_ns still equal the stamp and the stamped digest equals
the expected one, `resolve` trusts it; otherwise it rehashes (and refreshes the stamp).
`verify` (and the CLI's `mm2latent weights verify`) always rehashes in full. Why: rehashing
1 GB on every model construction costs seconds per call, while any change to a file's bytes
(re-download, copy, truncation, in-place edit) moves its mtime or ctime, and ctime cannot be
set back (`os.utime` resetting mtime itself bumps ctime). What the stamp misses: an edit in the
same clock tick (~1-10 ms on Linux) as the stamp, or raw writes to the block device; the full
`weights verify` catches those. Copying or chmod-ing the cache only costs one rehash. The JSON
lives beside the files, so this guards against corruption and accidents, not an attacker who
can write to the cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mm2latent.errors import MissingWeightsError, UnknownWeightsError, WeightsIntegrityError
from storage.atomic import atomic_write_bytes
from storage.digests import file_sha256
from storage.download import DownloadCfg, ProgressFn, download
from storage.file_lock import locked
from storage.fs import read_file

logger = logging.getLogger(__name__)

RECORDED_FILE = "recorded_sha256.json"
CACHE_ENV = "MM2LATENT_CACHE"
_JSON_FORMAT = 1


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained file: where it comes from, how it is stored and how to check it."""

    name: str            # 'arch.tag', e.g. 'stylegan2.ffhq1024-nvidia'
    filename: str        # file name in the cache dir
    url: str             # official URL (for manual entries: the page to download from)
    format: str          # 'nvidia-pickle' | 'rosinality-pt' | 'e4e-pt' | 'farl-pth' |
                         # 'openai-clip-jit' | 'facer-jit' | 'bisenet-pth' | 'deca-tar' |
                         # 'mm2latent-mask-ae-ckpt' | 'mm2latent-sketch-ae-ckpt' |
                         # 'mm2latent-mapping-ckpt' (the authors' Lightning files);
                         # mm2latent.model_loading.LOADERS maps each format to its loader
    sha256: str | None   # full hex digest if published upstream; None = recorded at first use
    size: int | None     # bytes if published upstream; None = not checked until recorded
    notes: str = ""      # how to get it by hand (Google Drive files) or other caveats
    manual: bool = False  # True = urllib cannot fetch it (Google Drive); user places the file


_GDRIVE_NOTE = (
    "Google Drive only, and Drive's download interstitial defeats a plain HTTP client: open "
    "the URL in a browser (or use `gdown {drive_id}`), save the file at the cache path named "
    "in this message and run `mm2latent weights verify {name}` to record its sha256."
)


def _gdrive(name: str, filename: str, drive_id: str, fmt: str, source: str) -> WeightSpec:
    """Build a manual-download spec for a file that upstream hosts only on Google Drive."""
    return WeightSpec(
        name=name, filename=filename, url=f"https://drive.google.com/file/d/{drive_id}/view",
        format=fmt, sha256=None, size=None, manual=True,
        notes=f"{source} " + _GDRIVE_NOTE.format(drive_id=drive_id, name=name),
    )


def _farl(epochs: int, notes: str) -> WeightSpec:
    """Build the spec of a FaRL backbone released on FacePerceiver/FaRL's GitHub releases."""
    filename = f"FaRL-Base-Patch16-LAIONFace20M-ep{epochs}.pth"
    return WeightSpec(
        name=f"farl.ep{epochs}", filename=filename,
        url="https://github.com/FacePerceiver/FaRL/releases/download/pretrained_weights/"
            + filename,
        format="farl-pth", sha256=None, size=None, notes=notes,
    )


# The authors' repository at the commit that holds the code and the autoencoder files (its
# default branch may hold only a README, so every URL is pinned to this commit).
MM2LATENT_COMMIT = "1d381a2c97a91fef0fe2f51b36036a559b6bf3b1"
_MM2LATENT_RAW = f"https://raw.githubusercontent.com/Open-Debin/MM2Latent/{MM2LATENT_COMMIT}"
_MAPPING_NOTE = (
    "The authors' {what} MappingNet (PyTorch Lightning). Their notebook "
    "(demo/demo_seg_sketch2image_generation.ipynb at {commit}) loads it from {folder}/, but the "
    "file is not in the repository and no public URL for it is known: obtain it from the "
    "authors, save it at the cache path named in this message and run `mm2latent weights "
    "verify {name}` to record its sha256."
)


def _mm2latent_ae(kind: str, path: str) -> WeightSpec:
    """Spec of an autoencoder checkpoint committed in the authors' repository."""
    return WeightSpec(
        name=f"mm2latent.{kind}-ae-official", filename=path.rsplit("/", 1)[1],
        url=f"{_MM2LATENT_RAW}/{path}", format=f"mm2latent-{kind}-ae-ckpt", sha256=None,
        size=None, notes=f"The authors' {kind} autoencoder, Open-Debin/MM2Latent {path} at "
                         f"commit {MM2LATENT_COMMIT[:7]}.")


def _mm2latent_mapping(modality: str, filename: str, folder: str) -> WeightSpec:
    """Spec of an authors' MappingNet checkpoint, which must be placed by hand."""
    name = f"mm2latent.mapping-{modality}-official"
    return WeightSpec(
        name=name, filename=filename, url="https://github.com/Open-Debin/MM2Latent",
        format="mm2latent-mapping-ckpt", sha256=None, size=None, manual=True,
        notes=_MAPPING_NOTE.format(what=f"text+{modality}", commit=MM2LATENT_COMMIT[:7],
                                   folder=folder, name=name))


_CLIP_BASE = "https://openaipublic.azureedge.net/clip/models"
_CLIP_B32_SHA = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
_CLIP_L14_336_SHA = "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"

# The table. Sources: NVlabs/stylegan2-ada-pytorch README; omertov/encoder4editing README
# (e4e and the rosinality-format FFHQ generator); FacePerceiver/FaRL releases;
# FacePerceiver/facer facer/face_parsing/farl.py; zllrunning/face-parsing.PyTorch README;
# yfeng95/DECA README and fetch_data.sh; openai/CLIP clip/clip.py (whose URLs embed the sha256
# that `clip._download` checks). No upstream states a digest or size for the others.
WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec for spec in (
        WeightSpec(
            name="stylegan2.ffhq1024-nvidia", filename="ffhq.pkl",
            url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl",
            format="nvidia-pickle", sha256=None, size=None,
            notes="FFHQ 1024x1024 trained with original StyleGAN2 (stylegan2-ada-pytorch README).",
        ),
        _gdrive("stylegan2.ffhq1024-rosinality", "stylegan2-ffhq-config-f.pt",
                "1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT", "rosinality-pt",
                "rosinality's conversion of NVIDIA's stylegan2-ffhq-config-f.pkl, linked as "
                "'FFHQ StyleGAN' in the encoder4editing README (alternatively convert the .pkl "
                "with rosinality's convert_weight.py)."),
        _gdrive("e4e.ffhq-encode", "e4e_ffhq_encode.pt", "1cUv_reLE6k3604or78EranS7XzuVMWeO",
                "e4e-pt", "'FFHQ Inversion' e4e encoder from the encoder4editing README."),
        _farl(16, "FaRL ViT-B/16, LAION-Face 20M, 16 epochs (the one used in the FaRL paper)."),
        _farl(64, "FaRL ViT-B/16, LAION-Face 20M, 64 epochs."),
        WeightSpec(
            name="facer.farl-celebm-448",
            filename="face_parsing.farl.celebm.main_ema_181500_jit.pt",
            url="https://github.com/FacePerceiver/facer/releases/download/models-v1/"
                "face_parsing.farl.celebm.main_ema_181500_jit.pt",
            format="facer-jit", sha256=None, size=None,
            notes="facer 'farl/celebm/448' face parser (TorchScript); facer checks no hash.",
        ),
        _gdrive("bisenet.celebamask-79999", "79999_iter.pth", "154JgKpzCPW82qINcVieuPH3fZ2e0P812",
                "bisenet-pth", "BiSeNet face parser from the face-parsing.PyTorch README."),
        _gdrive("deca.model", "deca_model.tar", "1rp8kdyLPvErw2dTmqtjISRVvQLj6Yzje", "deca-tar",
                "DECA trained model (DECA README / fetch_data.sh); FLAME files are separate "
                "and need a registration at flame.is.tue.mpg.de."),
        WeightSpec(
            name="clip.vit-b-32-openai", filename="ViT-B-32.pt",
            url=f"{_CLIP_BASE}/{_CLIP_B32_SHA}/ViT-B-32.pt",
            format="openai-clip-jit", sha256=_CLIP_B32_SHA, size=None,
        ),
        WeightSpec(
            name="clip.vit-l-14-336-openai", filename="ViT-L-14-336px.pt",
            url=f"{_CLIP_BASE}/{_CLIP_L14_336_SHA}/ViT-L-14-336px.pt",
            format="openai-clip-jit", sha256=_CLIP_L14_336_SHA, size=None,
            notes="Used by CMMD (CLIP ViT-L/14@336px embeddings).",
        ),
        _mm2latent_ae("mask", "models/greyseg_encoder/used_epoch495_train0p00124_val0p00114.ckpt"),
        _mm2latent_ae("sketch", "models/sketch_encoder/used_epoch458_train0p11285_val0p1277.ckpt"),
        _mm2latent_mapping("mask", "epoch=267-loss-l1=0.2001-cos=0.2274.ckpt",
                           "models/text_seg2latent"),
        _mm2latent_mapping("sketch", "epoch=472-loss-l1=0.2091-cos=0.2428.ckpt",
                           "models/text_sketch2latent"),
    )
}


VerifyStatus = Literal["ok", "missing", "mismatch", "unverified"]


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of checking one cached file."""

    name: str
    path: Path
    status: VerifyStatus            # ok | missing | mismatch | unverified (no reference digest)
    expected_sha256: str | None     # published or recorded digest; None = none known
    found_sha256: str | None        # digest of the file; None = not hashed (missing, stamp)
    expected_size: int | None       # published or recorded size in bytes; None = none known
    found_size: int | None          # None = missing
    message: str                    # one line for humans


class ManualDownloadRequired(MissingWeightsError):
    """`fetch` was asked for a file that must be downloaded by hand (see the spec's notes)."""


# ---------------------------------------------------------------------------------------------
# Registry look-up and cache paths


def get_spec(name: str) -> WeightSpec:
    """Return the registry entry for `name`.

    Args:
        name: registered weights name, e.g. 'clip.vit-b-32-openai'.

    Raises:
        UnknownWeightsError: listing every known name.
    """
    try:
        return WEIGHTS[name]
    except KeyError:
        raise UnknownWeightsError(
            f"No weights {name!r}; known: {', '.join(sorted(WEIGHTS))}. "
            "Register it in mm2latent/weights.py or pass a path to the file instead."
        ) from None


def list_specs() -> list[WeightSpec]:
    """Return all registry entries sorted by name."""
    return [WEIGHTS[name] for name in sorted(WEIGHTS)]


def default_cache_dir(environ: dict[str, str] | None = None) -> Path:
    """Return the cache dir from MM2LATENT_CACHE, else XDG_CACHE_HOME/mm2latent, else ~/.cache.

    Args:
        environ: environment mapping to read; None = os.environ.
    """
    env = os.environ if environ is None else environ
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser()
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mm2latent"


def resolve_cache_dir(cache_dir: Path | str | None) -> Path:
    """Return `cache_dir` as a Path, or the default cache dir when it is None."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def cache_path(name: str, cache_dir: Path | str | None = None) -> Path:
    """Return where the file for `name` lives in the cache (it may not exist).

    Args:
        name: registered weights name.
        cache_dir: cache directory; None = default_cache_dir().
    """
    return resolve_cache_dir(cache_dir) / get_spec(name).filename


# ---------------------------------------------------------------------------------------------
# recorded_sha256.json: {"format": 1, "entries": {name: {...}}, "stamps": {filename: {...}}}


@dataclass(frozen=True)
class RecordedDigest:
    """A reference digest recorded at the first verified fetch or use of an unpublished file."""

    filename: str     # cache file name it was recorded for; another name = not this file's
    url: str          # registry URL at recording time
    sha256: str       # full hex digest
    size: int         # bytes
    recorded_at: str  # ISO-8601 UTC, e.g. "2026-12-01T20:00:00Z"


@dataclass(frozen=True)
class HashStamp:
    """What a file looked like when it was last hashed in full (see the module docstring)."""

    size: int      # bytes
    mtime_ns: int  # st_mtime_ns at hashing time
    ctime_ns: int  # st_ctime_ns at hashing time (cannot be set back)
    sha256: str    # digest found then

    def matches(self, st: os.stat_result, sha256: str) -> bool:
        """Whether a file with stat `st` is unchanged since it hashed to `sha256`."""
        return (self.size == st.st_size and self.mtime_ns == st.st_mtime_ns
                and self.ctime_ns == st.st_ctime_ns and self.sha256 == sha256)


@dataclass
class RecordedDigests:
    """The content of recorded_sha256.json: reference digests by name, stamps by file name."""

    entries: dict[str, RecordedDigest] = field(default_factory=dict)  # registry name -> digest
    stamps: dict[str, HashStamp] = field(default_factory=dict)        # cache file name -> stamp

    def entry_for(self, spec: WeightSpec) -> RecordedDigest | None:
        """The recorded digest of `spec`, ignoring one made for another file name."""
        entry = self.entries.get(spec.name)
        return entry if entry is not None and entry.filename == spec.filename else None

    def to_json_bytes(self) -> bytes:
        """The file's bytes (same layout as ever: format, entries, stamps; sorted, indent 2)."""
        doc = {"format": _JSON_FORMAT,
               "entries": {k: dataclasses.asdict(v) for k, v in self.entries.items()},
               "stamps": {k: dataclasses.asdict(v) for k, v in self.stamps.items()}}
        return json.dumps(doc, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: Path) -> RecordedDigests:
        """Parse the file's bytes; WeightsIntegrityError naming `where` if they do not fit."""
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise WeightsIntegrityError(
                f"{where} is unreadable ({e}). It holds the sha256 digests recorded at first "
                "fetch; delete it and run `mm2latent weights verify` to record them again."
            ) from e
        try:
            if not isinstance(doc, dict) or doc.get("format") != _JSON_FORMAT:
                raise ValueError(f"expected format {_JSON_FORMAT}")
            return cls({k: RecordedDigest(**v) for k, v in doc.get("entries", {}).items()},
                       {k: HashStamp(**v) for k, v in doc.get("stamps", {}).items()})
        except (ValueError, TypeError, AttributeError) as e:
            raise WeightsIntegrityError(
                f"{where} has an unknown layout ({e}); delete it and run "
                "`mm2latent weights verify` to record the digests again.") from e


def load_recorded(cache_dir: Path | str | None = None) -> RecordedDigests:
    """Return the recorded digests and stamps of a cache dir (empty when absent).

    Args:
        cache_dir: cache directory; None = default_cache_dir().
    """
    path = resolve_cache_dir(cache_dir) / RECORDED_FILE
    try:
        raw = read_file(os.fspath(path))
    except FileNotFoundError:
        return RecordedDigests()
    except OSError as e:
        raise WeightsIntegrityError(
            f"{path} is unreadable ({e}). It holds the sha256 digests recorded at first "
            "fetch; delete it and run `mm2latent weights verify` to record them again."
        ) from e
    return RecordedDigests.from_json(raw, path)


@contextlib.contextmanager
def _update_recorded(cache_dir: Path) -> Iterator[RecordedDigests]:
    """Lock, load, let the caller edit, then atomically rewrite the recorded-digest JSON."""
    url = os.fspath(cache_dir / RECORDED_FILE)
    with locked(url):
        data = load_recorded(cache_dir)
        yield data
        atomic_write_bytes(url, data.to_json_bytes())


def _expected(spec: WeightSpec, data: RecordedDigests) -> tuple[str | None, int | None, str]:
    """Return (sha256, size, source) to check against: published first, then recorded."""
    entry = data.entry_for(spec)
    rec_sha = entry.sha256 if entry else None
    rec_size = entry.size if entry else None
    sha = spec.sha256.lower() if spec.sha256 else rec_sha
    size = spec.size if spec.size is not None else rec_size
    source = "published" if spec.sha256 else ("recorded" if rec_sha else "none")
    return sha, size, source


def _record(cache_dir: Path, spec: WeightSpec, path: Path, sha256: str, *,
            pin: bool, best_effort: bool = False) -> None:
    """Store the file's stamp and, when `pin`, its digest as the entry's reference.

    With `best_effort`, a cache dir we cannot write (a shared read-only cache) only costs the
    stamp, so later calls rehash; that is logged instead of failing the caller.
    """
    try:
        _write_record(cache_dir, spec, path, sha256, pin)
    except OSError as e:
        if not best_effort:
            raise
        logger.warning("could not update %s (%s); the file will be rehashed next time",
                       cache_dir / RECORDED_FILE, e)


def _write_record(cache_dir: Path, spec: WeightSpec, path: Path, sha256: str,
                  pin: bool) -> None:
    """Write the stamp (and the pinned digest) of one file into the recorded JSON."""
    st = path.stat()
    with _update_recorded(cache_dir) as data:
        data.stamps[spec.filename] = HashStamp(st.st_size, st.st_mtime_ns, st.st_ctime_ns, sha256)
        if pin:
            data.entries[spec.name] = RecordedDigest(
                spec.filename, spec.url, sha256, st.st_size,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def forget_recorded(name: str, cache_dir: Path | str | None = None) -> bool:
    """Drop the recorded digest and stamp of `name`; return whether one existed.

    Args:
        name: registered weights name.
        cache_dir: cache directory; None = default_cache_dir().
    """
    spec = get_spec(name)
    root = resolve_cache_dir(cache_dir)
    with _update_recorded(root) as data:
        existed = data.entries.pop(spec.name, None) is not None
        data.stamps.pop(spec.filename, None)
    return existed


# ---------------------------------------------------------------------------------------------
# Checking, resolving and fetching

CheckMode = Literal["full", "stamp", "quick"]


def _fetch_command(spec: WeightSpec, root: Path, extra: str = "") -> str:
    """Return the exact CLI command that fetches `spec` into `root`."""
    cmd = f"mm2latent weights fetch {spec.name}{extra}"
    if root != default_cache_dir():
        cmd += f" --cache-dir {root}"
    return f"`{cmd}`"


def _check(spec: WeightSpec, root: Path, mode: CheckMode, pin_unknown: bool) -> VerifyResult:
    """Compare the cached file of `spec` with its published or recorded size and digest."""
    path = root / spec.filename
    data = load_recorded(root)
    exp_sha, exp_size, source = _expected(spec, data)

    def make(status: VerifyStatus, found_sha: str | None, found_size: int | None,
             msg: str) -> VerifyResult:
        return VerifyResult(spec.name, path, status, exp_sha, found_sha, exp_size,
                            found_size, msg)

    if not path.is_file():
        return make("missing", None, None, f"{path} does not exist")
    st = path.stat()
    if exp_size is not None and st.st_size != exp_size:
        return make("mismatch", None, st.st_size,
                    f"size {st.st_size} bytes, {source} size {exp_size}")
    stamp = data.stamps.get(spec.filename)
    if mode != "full" and exp_sha is not None and stamp is not None and stamp.matches(st, exp_sha):
        return make("ok", exp_sha, st.st_size,
                    f"matches the {source} sha256 (unchanged since last hashed)")
    if mode == "quick":
        return make("unverified", None, st.st_size, "changed or never hashed since last "
                    "check; run `mm2latent weights verify` to hash it")
    digest = file_sha256(path)
    if exp_sha is None:
        if pin_unknown:
            _record(root, spec, path, digest, pin=True, best_effort=True)
        return make("unverified", digest, st.st_size,
                    "no published digest; recorded this one (trust on first use)"
                    if pin_unknown else "no published or recorded digest")
    if digest != exp_sha:
        return make("mismatch", digest, st.st_size,
                    f"sha256 {digest}, {source} sha256 {exp_sha}")
    _record(root, spec, path, digest, pin=False, best_effort=True)
    return make("ok", digest, st.st_size, f"matches the {source} sha256")


def _missing_message(spec: WeightSpec, path: Path, root: Path) -> str:
    """Explain that a file is absent and how to get it."""
    head = f"Weights {spec.name!r} are not in the cache: {path} does not exist."
    if spec.manual:
        return (f"{head} This file must be downloaded by hand from {spec.url}. {spec.notes} "
                f"Put it at {path}.")
    return (f"{head} Nothing downloads implicitly; run {_fetch_command(spec, root)} "
            f"(downloads {spec.url}), or point MM2LATENT_CACHE / cache_dir at the directory "
            "that holds it.")


def mismatch_message(result: VerifyResult, cache_dir: Path | str | None = None) -> str:
    """Explain an integrity failure: expected vs found and how to fix it.

    Args:
        result: a VerifyResult with status 'mismatch'.
        cache_dir: the cache directory it was checked in; None = default_cache_dir().
    """
    spec = get_spec(result.name)
    root = resolve_cache_dir(cache_dir)
    head = (f"{result.path} does not match the registry for {spec.name!r}: {result.message} "
            f"(expected sha256 {result.expected_sha256}, size {result.expected_size}; found "
            f"sha256 {result.found_sha256 or 'not computed'}, size {result.found_size}).")
    if spec.manual:
        fix = (f"Replace it with a fresh copy from {spec.url}; if you replaced it on purpose, "
               f"run `mm2latent weights verify --reset {spec.name}` to record the new digest.")
    else:
        fix = (f"Delete it and run {_fetch_command(spec, root, ' --force')} to download it "
               "again (and re-record its digest if none is published).")
    return f"{head} {fix}"


def verify(name: str, cache_dir: Path | str | None = None, *, mode: CheckMode = "full",
           record_unknown: bool = True) -> VerifyResult:
    """Check a cached file against its published or recorded sha256 and size.

    Args:
        name: registered weights name.
        cache_dir: cache directory; None = default_cache_dir().
        mode: 'full' rehashes; 'stamp' trusts an unchanged (size, mtime_ns) stamp and hashes
            otherwise; 'quick' never hashes (an unstamped file reports 'unverified').
        record_unknown: when no digest is published or recorded, record the one found now so
            later changes are caught (status is still 'unverified' this time).

    Returns:
        VerifyResult; status is 'ok', 'missing', 'mismatch' or 'unverified'. Never raises on a
        bad file.
    """
    return _check(get_spec(name), resolve_cache_dir(cache_dir), mode, record_unknown)


def resolve(name: str, cache_dir: Path | str | None = None, verify: bool = True) -> Path:
    """Return the path of a cached, checked weights file; never downloads.

    Args:
        name: registered weights name.
        cache_dir: cache directory; None = default_cache_dir().
        verify: check size and sha256 (published or recorded) using the stamp policy described
            in the module docstring; False = only check that the file exists.

    Raises:
        UnknownWeightsError: `name` is not registered.
        MissingWeightsError: the file is absent; the message names the URL and fetch command.
        WeightsIntegrityError: the file does not match its digest or size.
    """
    spec = get_spec(name)
    root = resolve_cache_dir(cache_dir)
    path = root / spec.filename
    if not path.is_file():
        raise MissingWeightsError(_missing_message(spec, path, root))
    if not verify:
        return path
    result = _check(spec, root, "stamp", pin_unknown=True)
    if result.status == "mismatch":
        raise WeightsIntegrityError(mismatch_message(result, root))
    if result.status == "unverified":
        logger.warning("%s: %s", path, result.message)
    return path


def fetch(name: str, cache_dir: Path | str | None = None, *, force: bool = False,
          progress: ProgressFn | None = None, config: DownloadCfg = DownloadCfg()) -> Path:
    """Download `name` into the cache unless a good copy is there; the only network path.

    Args:
        name: registered weights name.
        cache_dir: cache directory; None = default_cache_dir().
        force: download even if a good copy exists, and replace a recorded digest with the
            new file's (for entries without a published digest).
        progress: called as progress(done_bytes, total_bytes or None) during the transfer.
        config: timeouts and retries.

    Returns:
        Path of the verified file.

    Raises:
        ManualDownloadRequired: the entry is Google-Drive-only and the file is absent or bad.
        DownloadError: the transfer failed after all retries (re-run to resume).
        WeightsIntegrityError: the download does not match the expected size or sha256.
    """
    spec = get_spec(name)
    root = resolve_cache_dir(cache_dir)
    path = root / spec.filename
    if path.is_file() and not force:
        existing = _check(spec, root, "stamp", pin_unknown=True)
        if existing.status != "mismatch":
            return path
        if spec.manual:  # nothing to download: say the file is bad, not that it is absent
            raise WeightsIntegrityError(mismatch_message(existing, root))
        logger.warning("%s: %s; downloading it again", path, existing.message)
    if spec.manual:
        raise ManualDownloadRequired(_missing_message(spec, path, root))
    exp_sha, exp_size, source = ((spec.sha256, spec.size, "published") if force
                                 else _expected(spec, load_recorded(root)))
    try:
        result = download(spec.url, path, exp_sha, exp_size, config=config, progress=progress)
    except WeightsIntegrityError as e:
        if source != "recorded":
            raise
        raise WeightsIntegrityError(
            f"{e} The reference digest was recorded at an earlier fetch; if upstream replaced "
            f"the file, run {_fetch_command(spec, root, ' --force')} to record the new one."
        ) from e
    _record(root, spec, path, result.sha256, pin=spec.sha256 is None)
    return path
