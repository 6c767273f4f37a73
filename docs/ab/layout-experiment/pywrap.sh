#!/bin/bash
exec setarch x86_64 -R /work/main/.tox/test/bin/python "$@"
