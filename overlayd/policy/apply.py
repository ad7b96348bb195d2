"""The thin applier: runs render.py's scripts through `nft -f -`, reads counters. Nothing else.

Every change is one nft transaction: it commits whole or not at all. The applier remembers the
model the kernel holds; when an incremental transaction fails (someone edited our table, a
race with a flush) it falls back to a full replace, and when that fails too it raises and the
caller retries with backoff: the kernel keeps the previous complete rule set meanwhile.
"""
from __future__ import annotations

import json
import logging
from typing import Optional

from ..masquerade import CommandRunner, RulesError
from . import render
from .compile import TABLE, NftModel

log = logging.getLogger(__name__)


class Applier:
    def __init__(self, runner: CommandRunner = CommandRunner(), table: str = TABLE):
        self._runner = runner
        self.table = table
        self.model: Optional[NftModel] = None    # what the kernel holds, as far as we know

    def _nft(self, script: str) -> None:
        self._runner.run(["nft", "-f", "-"], input=script)

    def replace(self, model: NftModel) -> None:
        """Replace our whole table with `model` in one transaction."""
        self._nft(render.full(model, self.table))
        self.model = model

    def update(self, model: NftModel) -> str:
        """Bring the kernel to `model`: "none", "incremental" or "full" (what it took)."""
        if self.model is not None and self.model == model:
            return "none"
        script = render.incremental(self.model, model, self.table) if self.model is not None else None
        if script is not None:
            if not script:
                self.model = model
                return "none"
            try:
                self._nft(script)
                self.model = model
                return "incremental"
            except RulesError as err:
                log.warning("incremental nft update failed, replacing the table: %s", err)
        self.model = None
        self.replace(model)
        return "full"

    def remove(self) -> None:
        self.model = None
        self._nft(render.remove(self.table))

    def present(self) -> bool:
        proc = self._runner.run(["nft", "list", "table", "inet", self.table], check=False)
        return proc.returncode == 0

    def counters(self) -> dict:
        """Named counter -> packets, from the kernel ({} when our table is missing)."""
        proc = self._runner.run(["nft", "-j", "list", "counters", "table", "inet", self.table], check=False)
        if proc.returncode != 0:
            return {}
        out = {}
        for item in json.loads(proc.stdout).get("nftables", ()):
            c = item.get("counter")
            if c and c.get("table") == self.table:
                out[c["name"]] = int(c.get("packets", 0))
        return out


def remove_left_over(runner: CommandRunner = CommandRunner(), table: str = TABLE) -> bool:
    """--network-policy is off: remove the table a run with it left (kept on purpose across a
    restart, so pods stay policed). Left there, it would go on enforcing the policies of its last
    sync and drop every pod wired after it (addresses it never compiled: fail closed). True if
    there was one."""
    applier = Applier(runner, table)
    if not applier.present():
        return False
    applier.remove()
    return True

