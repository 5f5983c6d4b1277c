"""``python tests/motoserver.py -H HOST -p PORT``: moto server plus the Application Auto Scaling
tag calls moto 5.2.1 lacks (TagResource, UntagResource, ListTagsForResource, and the Tags of
RegisterScalableTarget).

The AWS provider tags every scalable target (the module's default_tags) and reads the tags back
after each create; without these calls it retries the unknown action for minutes and then fails.
Tags are kept per ARN in this process, the way moto keeps everything else. Nothing else changes.
"""

from __future__ import annotations

import json
import sys

from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse
from moto.server import main

_TAGS: dict[str, dict[str, str]] = {}
_register = ApplicationAutoScalingResponse.register_scalable_target


def register_scalable_target(self: ApplicationAutoScalingResponse) -> str:
    answer = _register(self)
    if self._get_param("Tags"):
        _TAGS.setdefault(json.loads(answer)["ScalableTargetARN"], {}).update(self._get_param("Tags"))
    return answer


def tag_resource(self: ApplicationAutoScalingResponse) -> str:
    _TAGS.setdefault(self._get_param("ResourceARN"), {}).update(self._get_param("Tags") or {})
    return "{}"


def untag_resource(self: ApplicationAutoScalingResponse) -> str:
    tags = _TAGS.setdefault(self._get_param("ResourceARN"), {})
    for key in self._get_param("TagKeys") or []:
        tags.pop(key, None)
    return "{}"


def list_tags_for_resource(self: ApplicationAutoScalingResponse) -> str:
    return json.dumps({"Tags": _TAGS.get(self._get_param("ResourceARN"), {})})


ApplicationAutoScalingResponse.register_scalable_target = register_scalable_target  # type: ignore[method-assign]
ApplicationAutoScalingResponse.tag_resource = tag_resource  # type: ignore[attr-defined]
ApplicationAutoScalingResponse.untag_resource = untag_resource  # type: ignore[attr-defined]
ApplicationAutoScalingResponse.list_tags_for_resource = list_tags_for_resource  # type: ignore[attr-defined]

if __name__ == "__main__":
    main(sys.argv[1:])
