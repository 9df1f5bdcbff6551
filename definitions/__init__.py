"""The experiment definitions that ship with pagi-rsm (YAML files; no code).

Installed as the resource package ``pagi_rsm.definition_files``, so that
``pagi run --definition=grammar/embedded_reber`` works from any directory and ``pagi list``
lists them. A path to a file on disk works too.
"""
