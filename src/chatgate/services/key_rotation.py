"""Key rotation: a new primary key version, then every sealed secret re-encrypted under it.

Runs while servers run: old versions keep decrypting throughout, each row is swapped by
compare-and-set so a concurrent credential update is never overwritten, and the job can be
interrupted and run again (rows already on the new version are skipped).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from chatgate.security.keyring.envelope import SecretBox
from chatgate.store.db import Database
from chatgate.store.repositories.sealed import SEALED_COLUMNS, SealedColumn

log = logging.getLogger(__name__)


@dataclass
class RotationReport:
    new_version: str
    resealed: int = 0
    already_current: int = 0
    changed_concurrently: int = 0
    per_column: dict[str, int] = field(default_factory=dict)


class KeyRotationService:
    def __init__(
        self, db: Database, box: SecretBox, columns: list[SealedColumn] | None = None, batch_size: int = 200
    ) -> None:
        self.db = db
        self.box = box
        self.columns = columns if columns is not None else SEALED_COLUMNS
        self.batch_size = batch_size

    async def rotate(self) -> RotationReport:
        new_version = await self.box.provider.rotate()
        log.info("key rotation started: new primary key %s", new_version)
        report = await self.reseal_all()
        log.info("key rotation finished: %s resealed", report.resealed)
        return report

    async def reseal_all(self) -> RotationReport:
        """Re-encrypt everything not yet under the primary version (also resumes a broken rotation)."""
        primary = await self.box.provider.primary_version()
        report = RotationReport(new_version=primary)
        for column in self.columns:
            done = 0
            after = ""
            while True:
                async with self.db.transaction() as session:
                    rows = await column.batch(session, after, self.batch_size)
                    for row_id, tenant_id, sealed in rows:
                        if self.box.key_version(sealed) == primary:
                            report.already_current += 1
                            continue
                        resealed = await self.box.reseal(sealed, column.aad(tenant_id, row_id))
                        if await column.replace(session, row_id, sealed, resealed):
                            done += 1
                        else:
                            report.changed_concurrently += 1
                if len(rows) < self.batch_size:
                    break
                after = rows[-1][0]
            report.per_column[column.name] = done
            report.resealed += done
        return report

    async def status(self) -> dict[str, dict[str, int]]:
        """How many secrets each key version protects, per column."""
        result: dict[str, dict[str, int]] = {}
        async with self.db.sessions() as session:
            for column in self.columns:
                counts = Counter(self.box.key_version(v) for v in await column.all_values(session))
                result[column.name] = dict(counts)
        return result
