"""``EvaluationResult``: metrics plus an artifacts side channel, as OpenEvolve defines it.

Same field names and helpers as OpenEvolve 0.4 so evaluators written for it run unchanged.
The agentopt runner reads ``.metrics`` and ``.artifacts`` from the returned object and sends
``{**metrics, "artifacts": artifacts}`` to the host; artifacts become feedback in the next
prompt, exactly the role OpenEvolve gives them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvaluationResult:
    """Result of one evaluation: numeric ``metrics`` and optional text/bytes ``artifacts``."""

    metrics: dict[str, float]
    artifacts: dict[str, str | bytes] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, metrics: dict[str, float]) -> EvaluationResult:
        """Wrap a plain metrics dict (OpenEvolve's backward-compatible return shape)."""
        return cls(metrics=metrics)

    def to_dict(self) -> dict[str, float]:
        """Only the metrics, like OpenEvolve (artifacts travel separately)."""
        return self.metrics

    def has_artifacts(self) -> bool:
        return bool(self.artifacts)

    def get_artifact_keys(self) -> list[str]:
        return list(self.artifacts.keys())

    def get_artifact_size(self, key: str) -> int:
        """Size in bytes of one artifact (UTF-8 for text), 0 when absent."""
        if key not in self.artifacts:
            return 0
        value = self.artifacts[key]
        if isinstance(value, bytes):
            return len(value)
        return len(str(value).encode("utf-8"))

    def get_total_artifact_size(self) -> int:
        return sum(self.get_artifact_size(key) for key in self.artifacts)
