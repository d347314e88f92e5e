"""Parameters of a ``fine-tune`` job: what to train, how, and the Trainer arguments users know.

The names are ``transformers.TrainingArguments``' as users know them from 4.x;
the worker maps them onto transformers 5 (``warmup_ratio`` becomes a fractional
``warmup_steps``; ``evaluation_strategy`` is accepted as the old name of
``eval_strategy``). ``output``, ``strategy`` and ``objective`` are required, but
checked by the worker (:meth:`FineTuneParams.require`), so that a producer may
queue a job whose details the train worker judges; everything given is checked
on both sides, unknown names included.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.errors import InvalidParameter
from shared.params.base import TaskParams

ALIAS = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
Strategy = Literal["full", "lora", "qlora", "prefix"]
Objective = Literal["sequence-classification", "token-classification", "causal-lm", "seq2seq"]
EvalStrategy = Literal["no", "epoch", "steps"]

#: The columns each objective reads: role -> the default column name.
ROLES: dict[str, dict[str, str]] = {
    "sequence-classification": {"text": "text", "label": "label"},
    "token-classification": {"tokens": "tokens", "tags": "tags"},
    "causal-lm": {"text": "text"},
    "seq2seq": {"source": "source", "target": "target"},
}


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LoraOptions(_Options):
    r: int = Field(8, ge=1, le=1024)
    alpha: int = Field(16, ge=1, le=4096)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | None = Field(
        None, min_length=1, description="Module names; absent: peft's default for the model."
    )


class PrefixOptions(_Options):
    num_virtual_tokens: int = Field(20, ge=1, le=512)


class FineTuneParams(TaskParams):
    output: str | None = Field(None, pattern=ALIAS, description="The new model's alias.")
    strategy: Strategy | None = None
    objective: Objective | None = None
    columns: dict[str, str] = Field(
        default_factory=dict, description="role -> column (ROLES gives each objective's roles)."
    )
    eval_fraction: float = Field(0.2, ge=0, lt=1, description="Rows held out for evaluation.")
    max_length: int = Field(128, ge=4, le=8192)
    merge: bool = Field(False, description="LoRA/QLoRA: save the merged model, not an adapter.")
    # TrainingArguments, under the names users know.
    num_train_epochs: float = Field(3.0, gt=0, le=1000)
    max_steps: int = Field(-1, ge=-1, description="> 0 overrides num_train_epochs.")
    per_device_train_batch_size: int = Field(8, ge=1, le=4096)
    per_device_eval_batch_size: int = Field(16, ge=1, le=4096)
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    learning_rate: float = Field(5e-5, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0, le=1)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    eval_strategy: EvalStrategy | None = None
    evaluation_strategy: EvalStrategy | None = Field(None, description="The old eval_strategy.")
    eval_steps: int | None = Field(None, ge=1)
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(50, ge=1, description="A checkpoint every N steps (for resume).")
    seed: int = Field(42, ge=0, le=2**32 - 1)
    lora: LoraOptions | None = None
    prefix: PrefixOptions | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FineTuneParams:
        both = self.eval_strategy and self.evaluation_strategy
        if both and self.eval_strategy != self.evaluation_strategy:
            raise InvalidParameter(
                "evaluation_strategy",
                f"is the old name of eval_strategy; give one ({self.evaluation_strategy!r} "
                f"vs {self.eval_strategy!r})",
            )
        if self.lora is not None and self.strategy not in (None, "lora", "qlora"):
            raise InvalidParameter("lora", f"only for strategy lora or qlora, not {self.strategy}")
        if self.prefix is not None and self.strategy not in (None, "prefix"):
            raise InvalidParameter("prefix", f"only for strategy prefix, not {self.strategy}")
        if self.merge and self.strategy not in (None, "lora", "qlora"):
            raise InvalidParameter("merge", f"only LoRA adapters merge, not {self.strategy}")
        if self.objective is not None:
            roles = ROLES[self.objective]
            unknown = sorted(set(self.columns) - set(roles))
            if unknown:
                raise InvalidParameter(
                    "columns",
                    f"unknown role {unknown[0]!r} for {self.objective}; roles: {', '.join(roles)}",
                )
        return self

    def require(self) -> None:
        """The fields every job must give (checked by the worker, before any loading)."""
        for name, allowed in (
            ("output", "the new model's alias"),
            ("strategy", "full, lora, qlora or prefix"),
            ("objective", ", ".join(ROLES)),
        ):
            if getattr(self, name) is None:
                raise InvalidParameter(name, f"required: {allowed}")

    @property
    def evaluation(self) -> EvalStrategy:
        """The evaluation strategy under either name; ``epoch`` unless told."""
        return self.eval_strategy or self.evaluation_strategy or "epoch"

    def column(self, role: str) -> str:
        assert self.objective is not None
        return self.columns.get(role, ROLES[self.objective][role])
