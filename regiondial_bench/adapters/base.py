"""The adapter contract: a batch of round requests in, one response per request out, in order.

An adapter only turns requests into text and regions. The runner owns ordering, reference
propagation, logging and resuming; metrics never call adapters.

Writing an adapter::

    from regiondial_bench.adapters import Adapter, RoundRequest, RoundResponse, register_adapter

    @register_adapter("my-model")
    class MyModel(Adapter):
        def __init__(self, checkpoint: str = "org/model"):
            ...

        def generate(self, requests: list[RoundRequest]) -> list[RoundResponse]:
            texts = my_batched_generate([r.load_image() for r in requests],
                                        [r.question for r in requests])
            return [RoundResponse(raw_text=t, frame=None) for t in texts]

Third-party packages register adapters through the ``regiondial_bench.adapters`` entry-point
group (``name = "package.module:AdapterClass"``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ..geometry import CoordinateFrame
from ..protocol import default_reference_text
from ..schema import RLE, Box, Region, UsedReference, is_file

if TYPE_CHECKING:
    from PIL import Image

    from ..schema import Bench

Output = Literal["box", "point", "mask"]


class AdapterError(RuntimeError):
    """An adapter cannot run as configured (missing dependency, missing pixels, bad option)."""


@dataclass(frozen=True)
class ImageInput:
    """A request's image: a file path or encoded bytes, plus its size when known.

    ``load()`` opens it as RGB with PIL; adapters that never look at pixels never call it.
    """

    path: Path | None = None
    data: bytes | None = None
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> tuple[int, int] | None:
        if self.width is None or self.height is None:
            return None
        return (self.width, self.height)

    @property
    def available(self) -> bool:
        return self.data is not None or (self.path is not None and is_file(self.path))

    def require_size(self) -> tuple[int, int]:
        """``(width, height)``: from the bench, else from the image file's header."""
        if self.size is not None:
            return self.size
        if self.available:
            from PIL import Image

            try:
                with Image.open(io.BytesIO(self.data) if self.data is not None else self.path) as img:
                    return img.size
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise AdapterError(f"cannot read the image {self._where}: {exc}") from exc
        raise AdapterError(
            "the image size is unknown and the bench has no image file for this dialogue; "
            "pass --images DIR with the images"
        )

    def load(self) -> Image.Image:
        from PIL import Image

        if self.data is not None:
            try:
                return Image.open(io.BytesIO(self.data)).convert("RGB")
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise AdapterError(f"cannot decode the image {self._where}: {exc}") from exc
        if self.path is None:
            raise AdapterError("this bench has no image for the dialogue (layout-only bench); "
                               "pass --images DIR with the COCO train2014 images")
        if not is_file(self.path):
            raise AdapterError(f"image not found: {self.path}; pass --images DIR pointing at the images")
        try:
            return Image.open(self.path).convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise AdapterError(f"cannot decode the image {self._where}: {exc}") from exc

    @property
    def _where(self) -> str:
        return str(self.path) if self.path is not None else f"({len(self.data or b'')} bytes in memory)"


@dataclass(frozen=True)
class HistoryItem:
    """An earlier turn of the same dialogue, as the model saw and answered it."""

    turn: int
    question: str
    answer_text: str
    regions: tuple[Region, ...] = ()


@dataclass(frozen=True)
class RoundRequest:
    """One turn to answer.

    ``question`` is rendered: every reference placeholder already holds the text of the
    reference actually used (``references``; boxes in original pixels, ``None`` when the
    referenced turn produced no region). ``question_template`` is the raw question.
    """

    dialogue_id: str
    turn: int
    image: ImageInput
    question: str
    question_template: str
    references: tuple[UsedReference, ...] = ()
    history: tuple[HistoryItem, ...] = ()
    wants: frozenset[Output] = frozenset({"box"})

    @property
    def key(self) -> tuple[str, int]:
        return (self.dialogue_id, self.turn)

    @property
    def round(self) -> int:
        return self.turn + 1

    def load_image(self) -> Image.Image:
        return self.image.load()


@dataclass
class RoundResponse:
    """An adapter's answer to one request.

    Give ``raw_text`` always. Text-generating adapters leave ``regions`` as None: the runner
    parses ``raw_text`` with the project's parser, reading coordinates in ``frame`` (None =
    original pixels), at most ``max_regions`` objects. Adapters with structured outputs set ``regions`` (original pixels).
    ``error`` marks a failed request (scored as a miss with this reason); with it,
    ``failure_kind="infra"`` says the infrastructure failed (connection, timeout, 5xx after
    retries), so ``evaluate --resume --retry-infra`` asks the turn again. Any other failure is
    the answer's (``"answer"``, also when left None).
    """

    raw_text: str
    regions: list[Region] | None = None
    frame: CoordinateFrame | None = None
    mask: RLE | None = None
    error: str | None = None
    failure_kind: str | None = None
    require_answer_tag: bool = False
    max_regions: int | None = None  # read at most this many objects from raw_text
    extra: dict[str, Any] = field(default_factory=dict)


class Adapter:
    """Base class of all adapters.

    Subclasses implement :meth:`generate`. Class attributes declare what the adapter needs:
    ``needs_pixels`` (the runner checks that images exist before starting), ``needs_image_size``
    (sizes or image files must be known) and ``streaming``
    (the adapter answers requests concurrently; the runner then sends a dialogue's next round as
    soon as its reference is answered, through :meth:`generate_one`). An adapter whose options are
    a pydantic model names it as ``options_class``: options are then validated (names, types,
    ranges) before the adapter is built (see :mod:`regiondial_bench.adapters.options`).
    """

    name: ClassVar[str] = ""
    needs_pixels: ClassVar[bool] = True
    needs_image_size: ClassVar[bool] = True
    streaming: ClassVar[bool] = False
    options_class: ClassVar[Any] = None
    renders_regions: ClassVar[bool] = False
    """The adapter gives ``regions`` itself and writes them into ``raw_text`` as original pixels
    (:func:`regiondial_bench.adapters.builtin.answer_text`): a validator reads them back that way."""
    gives_masks: ClassVar[bool] = False
    """The adapter gives masks of its own (a validator can only check them for consistency)."""
    max_concurrency: int = 1

    def prepare(self, bench: Bench) -> None:
        """Called once before a run with the bench (the oracle reads gold answers here)."""

    def reference_text(self, box: Box | None, request_image: ImageInput) -> str:
        """How a reference box is written into the question (default: original-pixel ints)."""
        return default_reference_text(box)

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        """Answer every request; return exactly one response per request, in order."""
        raise NotImplementedError

    def generate_one(self, request: RoundRequest) -> RoundResponse:
        """Answer one request (streaming adapters; default: a batch of one)."""
        return self.generate([request])[0]

    def config(self) -> dict[str, Any]:
        """The settings recorded in the run's provenance."""
        return {}

    def cache_identity(self) -> dict[str, Any] | None:
        """What makes this adapter's answers what they are, for the response cache; None keeps its
        answers out of the cache (the default).

        An adapter that opts in returns the model's identity (checkpoint name, revision or weights
        fingerprint where known), its preset and every option and generation setting that can change
        an answer, but nothing about where or how fast it runs (device, batch size, server URL,
        concurrency). Two runs whose adapters give equal identities may reuse each other's answers
        to identical requests (see :mod:`regiondial_bench.run.response_cache`); an answer that also
        depends on something outside the request (the gold data, the adapter's own earlier answers)
        must not be cached.
        """
        return None

    @property
    def samples(self) -> bool:
        """Whether answers are drawn by sampling (temperature above 0), so that the same request can
        get another answer. Sampled answers are reused from the response cache only when asked
        (``--cache-sampled``); repeats (``--repeats``) of an adapter that does not sample are identical."""
        return False

    def reseed(self, seed: int) -> None:
        """Draw sampled answers from ``seed`` from now on (``evaluate --repeats N --seed S`` gives
        repeat ``i`` the seed ``S + i``). Adapters that do not sample ignore it."""

    def close(self) -> None:
        """Release models, servers or processes."""
