#!/usr/bin/env python3
"""The JSON work behind scripts/trace.sh and scripts/trace.ps1 (both call this file).

Usage:
  jobtimeline.py [--prog NAME] request-ids JOB_ID
      the request ids of the job's lines on stdin, one a line
  jobtimeline.py [--prog NAME] timeline JOB_ID LABEL SOURCE...
      the job's lines from SOURCEs ('-' is stdin), sorted by timestamp and rendered

A line belongs to the job if its jobId is JOB_ID, or if it has no jobId and shares a
requestId with the job's lines. Errors go to stderr as "NAME: message", NAME being the
calling script (trace.sh, trace.ps1; default jobtimeline.py). Exit codes: 0 lines found,
1 none, 2 unreadable file.
"""

import io
import json
import os
import re
import sys
from typing import cast

HIDDEN = ('timestamp', 'level', 'service', 'message', 'jobId', '_aws', 'error')
SAFE_ID = re.compile(r'^[A-Za-z0-9._:;=/+-]+$')


class UnreadableSource(Exception):
    """A log file that cannot be read; the message names it and the reason."""


def read_lines(source):
    if source == '-':
        return sys.stdin.readlines()
    try:
        with open(source, encoding='utf-8', errors='replace') as stream:
            return stream.readlines()
    except OSError as exc:
        raise UnreadableSource(f'cannot read {source}: {exc.strerror}') from exc


def documents(sources):
    '''Each distinct JSON object line of the sources, in input order.'''
    seen, docs = set(), []
    for raw in (line.strip() for source in sources for line in read_lines(source)):
        if raw.startswith('{') and raw not in seen:
            seen.add(raw)
            try:
                docs.append(json.loads(raw))
            except ValueError:
                pass
    return [doc for doc in docs if isinstance(doc, dict)]


def request_ids(docs, job_id):
    return {d['requestId'] for d in docs if d.get('jobId') == job_id and isinstance(d.get('requestId'), str)}


def belongs(doc, job_id, rids):
    '''A line with the job id, or one without a job id that shares a request id with those.'''
    if 'jobId' in doc:
        return doc['jobId'] == job_id
    return isinstance(doc.get('requestId'), str) and doc['requestId'] in rids


def show(value):
    if isinstance(value, str) and value and not re.search(r'[\s\x22]', value):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(',', ':'))


def render(doc):
    head = [str(doc.get(key, '-')) for key in ('timestamp', 'service', 'level', 'message')]
    line = f'{head[0]} {head[1]:<12} {head[2]:<7} {head[3]}'
    fields = [f'{key}={show(value)}' for key, value in doc.items() if key not in HIDDEN]
    if fields:
        line += '  ' + ' '.join(fields)
    error = doc.get('error')
    if isinstance(error, dict):
        kind, text = (str(error.get(key, '?')) for key in ('type', 'message'))
        line += '  error=' + kind + ': ' + ' '.join(text.splitlines())
        if doc.get('level') == 'ERROR':
            line += ''.join('\n    ' + row for row in str(error.get('stack', '')).splitlines())
    elif error is not None:
        line += '  error=' + show(error)
    return line


def main(argv):
    prog = 'jobtimeline.py'
    if argv[:1] == ['--prog']:
        prog, argv = argv[1], argv[2:]
    try:
        return run(prog, *argv)
    except UnreadableSource as exc:
        print(f'{prog}: {exc}', file=sys.stderr)
        return 2


def run(prog, mode, job_id, label='', *sources):
    '''One mode of the usage above; returns the exit code.'''
    cast(io.TextIOWrapper, sys.stdin).reconfigure(encoding='utf-8', errors='replace')
    cast(io.TextIOWrapper, sys.stdout).reconfigure(errors='replace')
    docs = documents(sources or ['-'])
    rids = request_ids(docs, job_id)
    if mode == 'request-ids':
        print('\n'.join(sorted(rid for rid in rids if SAFE_ID.match(rid))))
        return 0
    lines = sorted((d for d in docs if belongs(d, job_id, rids)), key=lambda d: str(d.get('timestamp', '')))
    if not lines:
        where = label or ', '.join('stdin' if s == '-' else s for s in sources)
        print(f'{prog}: no log lines for job {job_id} in {where}', file=sys.stderr)
        return 1
    for doc in lines:
        print(render(doc))
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:  # the reader stopped early (| head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
