"""tradebot-runner hyperopt: one worker of a Freqtrade hyperopt search, in a Hyperopt's Job.

    tradebot-runner hyperopt --config PATH --strategy-file PATH --data NAME_OR_DIR
                             --output DIR --timerange RANGE [--markets PATH]
                             --spaces S [S ...] --loss NAME --epochs N
                             [--sampler NAME] [--random-state N] [--min-trades N]
                             [--jobs N] [--summary PATH]
                             --worker INDEX --study NAME

Arguments (the controller's side of the contract):

* --config, --strategy-file, --data, --markets, --output: as for `tradebot-runner backtest`
  (the config is a backtest config: the operator's generated Freqtrade config).
* --timerange: the training window, Freqtrade's format (required: a search always has one).
* --spaces: Freqtrade spaces (buy sell enter exit roi stoploss trailing protection trades).
  A chosen space the strategy has no parameter for is skipped (Freqtrade's
  --ignore-missing-spaces); when none of the chosen spaces has one, the worker refuses to
  start: exit 1, the summary's error names the spaces.
* --loss: Freqtrade's loss class name (e.g. SharpeHyperOptLoss).
* --epochs N: THIS worker's share of the search's epochs (the controller splits the total).
* --sampler: an Optuna sampler Freqtrade knows (TPESampler, NSGAIIISampler, ...); default:
  the strategy's own (Freqtrade's default NSGAIIISampler).
* --random-state N: the search's seed; this worker uses N + INDEX (so no two workers propose
  the same points). Left out: Freqtrade picks a random seed.
* --min-trades N: Freqtrade's --min-trades.
* --jobs N: Freqtrade's --job-workers inside this worker; default 1 (the search's parallelism
  is its worker pods).
* --worker INDEX: this worker's index, 0-based, stable across restarts of its pod.
* --study NAME: the Optuna study's name, the same for all workers of one Hyperopt.

Environment:

* TRADEBOT_STUDY_STORAGE: the shared study's storage URL (`postgresql+psycopg://...`). A
  secret: never logged, never written to the summary. Set -> shared mode: every worker asks
  and tells trials of the one study `--study NAME`. Unset -> independent mode: Freqtrade's
  own in-memory study, seed randomState + INDEX; the operator merges the workers' results.
* TRADEBOT_CORRELATION_ID: as for backtest (added to every log line).

Shared mode guarantees: each trial carries the user attribute `tradebot_worker` = INDEX. A
restarted worker (same INDEX) first fails its own trials left RUNNING by the killed pod, then
runs only the epochs it still owes (its share minus its COMPLETE trials); duplicates Freqtrade
drops are told FAIL, never left RUNNING. Its epochs.jsonl and stdout repeat the epochs its
earlier runs completed (same epoch numbers: keyed by epoch, they are idempotent).

Output:

* DIR/summary.json, the termination message (/dev/termination-log when writable, or
  --summary PATH) and the last stdout line: a HyperoptSummary (hyperopt_summary.py).
  `best` is the best epoch of the whole study (shared) or of this worker (independent); its
  `parameters` is Freqtrade's parameter file text exactly (`<Strategy>.json`), its results
  the epoch's in-sample figures (8 decimals, like a Backtest's).
* DIR/epochs.jsonl: one EpochRecord JSON per epoch of this worker; and on stdout, as each
  epoch finishes, one line `EPOCH_PREFIX + EpochRecord JSON`. `epoch` is the Optuna trial
  number + 1 (shared) or this worker's own epoch number (independent).
* Artifacts (in the summary with sha256 and size): Freqtrade's `.fthypt` epochs file,
  `<Strategy>.json` (the best parameters), config.json, freqtrade.log, freqtrade-console.log.

Exit status: 0 when the worker ran its epochs (or owed none) and read them back, 1 otherwise
(the summary's error says why), 2 for a command line that does not parse.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tradebot.api.hyperopt import LOSS_FUNCTIONS

STORAGE_ENV = "TRADEBOT_STUDY_STORAGE"
SPACES = ("buy", "sell", "enter", "exit", "roi", "stoploss", "trailing", "protection", "trades")
SAMPLERS = ("TPESampler", "GPSampler", "CmaEsSampler", "NSGAIISampler", "NSGAIIISampler",
            "QMCSampler")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _index(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `hyperopt` subcommand on the runner's parser."""
    ho = commands.add_parser(
        "hyperopt", help="run one worker of a `freqtrade hyperopt` search",
        description="Run one worker of a Freqtrade hyperopt search; with "
                    f"${STORAGE_ENV} set, the workers share one Optuna study.")
    ho.add_argument("--config", type=Path, required=True,
                    help="Freqtrade config JSON, as the operator generated it")
    ho.add_argument("--strategy-file", type=Path, required=True,
                    help="the strategy's Python file")
    ho.add_argument("--data", required=True,
                    help="bundled data set name (e.g. sample) or a Freqtrade data directory")
    ho.add_argument("--output", type=Path, required=True, help="artifact directory")
    ho.add_argument("--timerange", required=True,
                    help="training window, Freqtrade's format, e.g. 20240102-20240201")
    ho.add_argument("--markets", type=Path, default=None,
                    help="the exchange's markets saved with the data (default: bundled)")
    ho.add_argument("--spaces", nargs="+", choices=SPACES, required=True, metavar="SPACE",
                    help=f"spaces to search: {' '.join(SPACES)}")
    ho.add_argument("--loss", required=True, choices=LOSS_FUNCTIONS, metavar="NAME",
                    help="Freqtrade loss class, e.g. SharpeHyperOptLoss")
    ho.add_argument("--epochs", type=_positive, required=True,
                    help="this worker's share of the epochs")
    ho.add_argument("--sampler", choices=SAMPLERS, default=None, metavar="NAME",
                    help=f"Optuna sampler ({', '.join(SAMPLERS)}); default: the strategy's")
    ho.add_argument("--random-state", type=_positive, default=None,
                    help="the search's seed; this worker uses it + --worker")
    ho.add_argument("--min-trades", type=_positive, default=None,
                    help="Freqtrade's --min-trades")
    ho.add_argument("--jobs", type=_positive, default=1,
                    help="Freqtrade's parallel jobs inside this worker (default 1)")
    ho.add_argument("--summary", type=Path, default=None,
                    help="where to write the summary JSON as well as OUTPUT/summary.json "
                         "(default: /dev/termination-log when writable)")
    ho.add_argument("--worker", type=_index, required=True,
                    help="this worker's index (0-based, stable across restarts)")
    ho.add_argument("--study", required=True,
                    help="the Optuna study name shared by the search's workers")
