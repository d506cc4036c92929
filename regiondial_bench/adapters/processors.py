"""Loading a chat VLM's processor, also on machines without torchvision.

Used by the ``hf`` and ``vllm`` adapters and by the GRPO trainer.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def load_vlm_processor(path: str | Path, **image_processor_options: Any) -> Any:
    """Load a chat VLM's processor, also where torchvision is absent.

    ``AutoProcessor`` builds Qwen2.5-VL's video processor, which needs torchvision. Without it,
    this builds the same processor class from the tokenizer and the PIL image processor, with no
    video processor (images only).

    Args:
        path: A local folder or Hub id.
        **image_processor_options: Passed to the image processor (e.g. ``min_pixels``, ``max_pixels``).

    Returns:
        A processor whose ``__call__(text=..., images=...)`` and ``apply_chat_template`` work.
    """
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        import torchvision  # noqa: F401

        have_torchvision = True
    except ImportError:
        have_torchvision = False
    if have_torchvision:
        return AutoProcessor.from_pretrained(str(path), **image_processor_options)

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    image_processor = AutoImageProcessor.from_pretrained(str(path), backend="pil", **image_processor_options)
    processor_cls = _image_only(_processor_class(path))
    return processor_cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                         chat_template=tokenizer.chat_template)


def _image_only(processor_cls: Any) -> Any:
    """A subclass of ``processor_cls`` that accepts ``video_processor=None`` (images only)."""

    class ImageOnlyProcessor(processor_cls):
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument is None and argument_name == "video_processor":
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    ImageOnlyProcessor.__name__ = f"ImageOnly{processor_cls.__name__}"
    ImageOnlyProcessor.__qualname__ = ImageOnlyProcessor.__name__
    return ImageOnlyProcessor


def _processor_class(path: str | Path) -> Any:
    """The processor class a checkpoint names (Qwen2.5-VL when it names none)."""
    import transformers

    name = "Qwen2_5_VLProcessor"
    try:
        from huggingface_hub import hf_hub_download

        local = Path(path) / "processor_config.json"
        config_file = local if local.is_file() else Path(hf_hub_download(str(path), "processor_config.json"))
        name = json.loads(config_file.read_text()).get("processor_class", name)
    except Exception:  # noqa: BLE001  (many checkpoints ship no processor_config.json)
        logger.debug("no processor_config.json for %s; assuming %s", path, name)
    return getattr(transformers, name)
