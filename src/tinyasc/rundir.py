"""The files of a run folder, named in one place: `tinyasc train` writes config.json, metrics.jsonl,
last.pt, best.pt and results.json; `tinyasc compress` adds compress.json, compressed.pt and
compressed_best.pt."""
import json
from dataclasses import dataclass
from pathlib import Path

from tinyasc.errors import TinyascError


@dataclass(frozen=True)
class RunDir:
    path: Path

    CONFIG = "config.json"  # the full resolved experiment (recipe + runtime)
    METRICS = "metrics.jsonl"  # one JSON line per epoch
    LAST = "last.pt"  # the latest epoch, with optimizer and RNG state (resume from here)
    BEST = "best.pt"  # the best epoch on train.select_split (the validation split by default)
    RESULTS = "results.json"  # written when the run is finished
    COMPRESS = "compress.json"  # compression settings
    COMPRESSED = "compressed.pt"  # int8 + fp16 student, last epoch
    COMPRESSED_BEST = "compressed_best.pt"  # int8 + fp16 student, best epoch

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    def __truediv__(self, name):
        return self.path / name

    @property
    def config(self):
        return self.path / self.CONFIG

    @property
    def metrics(self):
        return self.path / self.METRICS

    @property
    def last(self):
        return self.path / self.LAST

    @property
    def best(self):
        return self.path / self.BEST

    @property
    def results(self):
        return self.path / self.RESULTS

    @property
    def compress_settings(self):
        return self.path / self.COMPRESS

    @property
    def compressed(self):
        return self.path / self.COMPRESSED

    @property
    def compressed_best(self):
        return self.path / self.COMPRESSED_BEST

    def read_results(self):
        """The finished run's results dict, or one error line naming the file."""
        try:
            results = json.loads(self.results.read_text())
        except (OSError, ValueError) as e:
            raise TinyascError(f"{self.results}: unreadable results ({e})") from None
        if not isinstance(results, dict) or not isinstance(results.get("last"), dict):
            raise TinyascError(f"{self.results}: not a tinyasc results file (no 'last' metrics)")
        return results

    def run_files(self):
        """Files a fresh run replaces (`--force`): training's and compression's, nothing else."""
        return [self.path / n for n in (self.METRICS, self.RESULTS, self.LAST, self.BEST, self.COMPRESS,
                                        self.COMPRESSED, self.COMPRESSED_BEST)]
