"""The search-space file: load it, check all that can be checked before Ray starts, and say what
is wrong in one line naming the file, the line and the key path (never a traceback).

errors.py words the problems, yaml_lines.py reads the file with each key's line, params.py,
sections.py and schema.py are its schema, checks.py checks params against the model families,
load.py applies the command line's overrides and validates, ready.py finds the ready spaces.
"""

from raysearch.spec.checks import FAMILY
from raysearch.spec.errors import SpecError
from raysearch.spec.load import load_spec
from raysearch.spec.params import CategoricalParam, FloatParam, IntParam, Param
from raysearch.spec.ready import SPACES_DIR, ready_spaces, resolve_space
from raysearch.spec.schema import Spec
from raysearch.spec.sections import Objective, Resources, Scheduler, Search, WarmStart

__all__ = ["FAMILY", "SPACES_DIR", "CategoricalParam", "FloatParam", "IntParam", "Objective",
           "Param", "Resources", "Scheduler", "Search", "Spec", "SpecError", "WarmStart",
           "load_spec", "ready_spaces", "resolve_space"]
