#!/usr/bin/env python3
"""The JSON work behind scripts/deploy.sh and scripts/deploy.ps1 (both call this file).

Usage:
  taskdefinition.py [--prog NAME] CONTAINER IMAGE
      reads `aws ecs describe-task-definition --include TAGS --output json` on stdin and prints
      the `register-task-definition --cli-input-json` input for a new revision: the same
      definition and tags with CONTAINER's image set to IMAGE

Every other value is copied as it was, strings included (PowerShell's ConvertFrom-Json would
turn ISO-8601 strings, say an environment value, into dates and write them back reformatted).
Errors go to stderr as "NAME: message", NAME being the calling script (default
taskdefinition.py). Exit codes: 0 printed, 1 no such container or not a task definition.
"""

import json
import sys

# Fields describe-task-definition returns that register-task-definition refuses.
READ_ONLY_FIELDS = ('taskDefinitionArn', 'revision', 'status', 'requiresAttributes', 'compatibilities',
                    'registeredAt', 'registeredBy', 'deregisteredAt')


class NoSuchContainer(Exception):
    """The task definition has no container of the given name."""


def registration_input(described: dict, container: str, image: str) -> dict:
    """The register-task-definition input for ``described`` with ``container`` running ``image``."""
    definition = {k: v for k, v in described['taskDefinition'].items() if k not in READ_ONLY_FIELDS}
    matches = [c for c in definition['containerDefinitions'] if c['name'] == container]
    if not matches:
        raise NoSuchContainer(f"no container named '{container}' in task definition {definition['family']}")
    matches[0]['image'] = image
    if described.get('tags'):
        definition['tags'] = described['tags']
    return definition


def main(argv: list[str]) -> int:
    prog = 'taskdefinition.py'
    if argv[:1] == ['--prog']:
        prog, argv = argv[1], argv[2:]
    container, image = argv
    try:
        described = json.load(sys.stdin)
        json.dump(registration_input(described, container, image), sys.stdout)
    except NoSuchContainer as exc:
        print(f'{prog}: {exc}', file=sys.stderr)
        return 1
    except (ValueError, KeyError, TypeError) as exc:
        print(f'{prog}: not a describe-task-definition document: {exc!r}', file=sys.stderr)
        return 1
    print()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
