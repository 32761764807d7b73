"""The verdict on a program, decided where the program cannot reach.

A program and its tests never share a process. The program runs in one sandboxed process (the servant: it loads
program.py and then only answers calls); the tests run in another (the judge), in a PID namespace of their own,
which the program can neither see nor signal. The judge evaluates every test statement itself and calls the
program's functions through a pipe: arguments go over, and the result comes back as plain data (numbers, strings,
bytes, lists, tuples, dicts, sets; an object of the program's own class stays in the servant and comes back as a
handle that compares equal only to itself). So nothing the program does in its own process -- patching builtins,
`exec` or `AssertionError`, frame or `sys.modules` surgery, `sys.settrace`, an object whose `__eq__` is always
true, exiting early, searching memory for a token -- changes what the judge computes: a program passes only by
returning what the tests expect. The judge holds the token that says "passed" and writes it only after every test
statement ran.

Before calling the program, the judge runs the same tests against null stubs (every name the tests take from the
program replaced by a function returning None): tests that pass that way test nothing ("tests powerless"), and
tests that fail to compile are "tests broken": neither is the program's fault, and neither is a pass.

CODEC is source text both processes run (the sandbox's interpreter may be a system python without seqdistill)."""

from __future__ import annotations

import ast


def tests_without_power(tests) -> str | None:
    """Why test code could never fail a program, read from its text before anything runs (None: it can). The judge
    also checks at run time (the same tests against null stubs must fail); this catches the forms a dataset loader
    can see: not a string, not Python, no assert, or asserts only inside functions nothing calls."""
    if not isinstance(tests, str):
        return f"are a {type(tests).__name__}, not test code"
    try:
        tree = ast.parse(tests)
    except (SyntaxError, ValueError) as exc:
        return f"do not compile ({type(exc).__name__}: {getattr(exc, 'msg', exc)})"
    if not any(isinstance(n, ast.Assert) for n in ast.walk(tree)):
        return "have no assert"
    top = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    if not any(isinstance(n, ast.Assert) or any(isinstance(c, ast.Call) for c in ast.walk(n)) for n in top):
        return "define their checks but never call them"
    return None

CODEC = r'''
import json as _json

_ITERS = {"range", "map", "filter", "zip", "reversed", "enumerate", "list_iterator", "tuple_iterator",
          "set_iterator", "range_iterator", "str_iterator", "dict_keyiterator", "dict_valueiterator",
          "dict_itemiterator", "dict_keys", "dict_values", "dict_items", "generator"}
_MAX_ITEMS = 100000


def enc(x, handles=None, depth=0):
    """A value as JSON-able plain data; anything else becomes a handle (servant side) or {"x": type}."""
    if depth > 60:
        return {"x": "nesting deeper than 60"}
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if x.bit_length() < 1000 else {"I": hex(x)}
    if t is float:
        return x if x == x and x not in (float("inf"), float("-inf")) else {"F": repr(x)}
    if t is list:
        return [enc(v, handles, depth + 1) for v in x]
    if t in (tuple, set, frozenset):
        return {{tuple: "t", set: "s", frozenset: "f"}[t]: [enc(v, handles, depth + 1) for v in x]}
    if t is dict:
        return {"d": [[enc(k, handles, depth + 1), enc(v, handles, depth + 1)] for k, v in x.items()]}
    if t is bytes:
        return {"b": x.hex()}
    if t is complex:
        return {"c": [enc(x.real), enc(x.imag)]}
    for base in (int, float, str, bytes, tuple, list, dict, set, frozenset):
        if isinstance(x, base) and t is not bool:  # Counter, OrderedDict, namedtuple, IntEnum...: their data,
            # read with the base type's own methods, so an overridden __eq__ or __iter__ stays in the program
            if base is dict:
                return {"d": [[enc(k, handles, depth + 1), enc(v, handles, depth + 1)] for k, v in dict.items(x)]}
            if base in (tuple, list, set, frozenset):
                items = [enc(v, handles, depth + 1) for v in base.__iter__(x)]
                return items if base is list else {{tuple: "t", set: "s", frozenset: "f"}[base]: items}
            return enc({int: int.__int__, float: float.__float__, str: str.__str__, bytes: bytes.__bytes__}[base](x),
                       handles, depth + 1)
    if t.__name__ in _ITERS and t.__module__ == "builtins":
        out = []
        for v in x:
            if len(out) >= _MAX_ITEMS:
                return {"x": "iterator longer than 100000 items"}
            out.append(enc(v, handles, depth + 1))
        return {"i": out}
    if t.__name__ == "Handle" and isinstance(getattr(x, "_hid", None), int):
        return {"h": x._hid}
    if handles is not None:
        handles.append(x)
        return {"h": len(handles) - 1, "type": t.__name__}
    return {"x": t.__name__}


def dec(v, resolve=None, depth=0):
    """Plain data back into Python values; refuses anything else (a hostile sender gets a ValueError)."""
    if depth > 70:
        raise ValueError("nesting too deep")
    if v is None or type(v) in (bool, int, float, str):
        return v
    if type(v) is list:
        return [dec(x, resolve, depth + 1) for x in v]
    if type(v) is not dict or not v or len(v) > 2:
        raise ValueError("not plain data")
    tag = next(iter(v))
    val = v[tag]
    if tag == "t":
        return tuple(dec(x, resolve, depth + 1) for x in val)
    if tag == "s":
        return set(dec(x, resolve, depth + 1) for x in val)
    if tag == "f":
        return frozenset(dec(x, resolve, depth + 1) for x in val)
    if tag == "d":
        return {dec(k, resolve, depth + 1): dec(x, resolve, depth + 1) for k, x in val}
    if tag == "b":
        return bytes.fromhex(val)
    if tag == "c":
        return complex(dec(val[0]), dec(val[1]))
    if tag == "F" and val in ("nan", "inf", "-inf"):
        return float(val)
    if tag == "I" and type(val) is str:
        return int(val, 16)
    if tag == "i":
        return iter([dec(x, resolve, depth + 1) for x in val])
    if tag == "h" and type(val) is int and resolve is not None:
        return resolve(val, v.get("type"))
    if tag == "x" and type(val) is str:
        return Opaque(val)
    raise ValueError("not plain data")


class Opaque:
    """A value that could not cross as plain data: equal to nothing, so a test comparing it fails."""

    def __init__(self, what):
        self.what = what

    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    __hash__ = object.__hash__

    def __repr__(self):
        return "<" + self.what[:60] + " from the program: not plain data>"
'''

# The servant: loads the program, then answers the judge's requests until the pipe closes. Runs inside the
# program's sandbox; nothing here is trusted by the judge (it only ever returns data).
SERVANT = CODEC + r'''
import os, sys


def _serve():
    rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
    out = os.open("output.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    reader, writer = os.fdopen(rfd, "rb"), os.fdopen(wfd, "wb")
    say = lambda msg: (writer.write(_json.dumps(msg).encode() + b"\n"), writer.flush())
    g = {"__name__": "__main__"}
    try:
        exec(compile(open("program.py").read(), "program.py", "exec"), g)
    except BaseException as e:
        say({"loaded": False, "error": [type(e).__name__, str(e)[:300]]})
        return
    say({"loaded": True})
    handles = []

    def resolve(hid, _type):
        return handles[hid]

    for line in reader:
        try:
            req = _json.loads(line)
            op = req["op"]
            if op == "get":
                if req["name"] not in g:
                    say({"missing": True})
                    continue
                v = g[req["name"]]
                if type(v).__name__ == "module":  # the judge imports its own copy: a patched module stays here
                    say({"module": getattr(v, "__name__", "")})
                    continue
                say({"value": enc(v, handles)})
            elif op in ("call", "attr", "setattr"):
                target = handles[req["h"]] if "h" in req else g[req["name"]]
                if op == "attr":
                    say({"value": enc(getattr(target, req["attr"]), handles)})
                    continue
                if op == "setattr":
                    setattr(target, req["attr"], dec(req["value"], resolve))
                    say({"value": None})
                    continue
                args = [dec(a, resolve) for a in req["args"]]
                kwargs = {k: dec(a, resolve) for k, a in req["kwargs"]}
                result = target(*args, **kwargs)
                # arguments the program changed in place travel back with the result
                say({"value": enc(result, handles), "args": [enc(a, handles) for a in args],
                     "kwargs": [[k, enc(a, handles)] for k, a in kwargs.items()]})
        except RecursionError as e:
            say({"raise": ["RecursionError", str(e)[:300]]})
        except BaseException as e:
            say({"raise": [type(e).__name__, str(e)[:300]]})


_serve()
'''

# The judge: tests in, one verdict line out on its report descriptor. Runs in its own sandbox, with the tests on
# stdin and the token as its first line; it never loads the program.
JUDGE = CODEC + r'''
import ast, builtins, os, sys

_MAX_LINE = 8 << 20


class Broken(Exception):
    pass


def _main():
    report, req_fd, resp_fd = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    token = sys.stdin.readline().strip()
    tests = sys.stdin.read()
    sys.stdin.close()
    write = lambda line: os.write(report, (line[:600] + "\n").encode())
    try:
        code = compile(tests, "tests.py", "exec")
        tree = ast.parse(tests)
    except (SyntaxError, ValueError) as e:
        write("BROKEN tests do not compile: " + type(e).__name__ + ": " + str(e)[:200])
        return
    assigned = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            assigned.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            assigned.update((a.asname or a.name).split(".")[0] for a in n.names)
        elif isinstance(n, ast.arg):
            assigned.add(n.arg)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            assigned.add(n.name)
    loads = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)})
    free = [n for n in loads if n not in assigned]
    wanted = [n for n in free if not hasattr(builtins, n)]
    # builtins stay the judge's own (a program that redefines `abs` or `len` does not change what the tests
    # compute), except in tests whose only free names are builtins: then the function under test is named like
    # one (MBPP's `def sum(a, b)`), and the program's definition is the one tested
    shadowed = not wanted
    if shadowed:
        wanted = free
    if not wanted:
        write("POWERLESS the tests use nothing the program defines")
        return
    # the power check: the same tests with every program name a function that returns None
    null = {"__name__": "__main__"}
    null.update({n: (lambda *a, **k: None) for n in wanted})
    try:
        exec(code, null)
    except BaseException:
        pass
    else:
        write("POWERLESS the tests pass a program whose every function returns None")
        return
    req, resp = os.fdopen(req_fd, "wb"), os.fdopen(resp_fd, "rb")

    def ask(msg):
        req.write(_json.dumps(msg).encode() + b"\n")
        req.flush()
        line = resp.readline(_MAX_LINE)
        if not line.endswith(b"\n"):
            raise Broken("the program's process ended or answered more than 8 MB")
        return _json.loads(line)

    def raised(name, message):
        cls = getattr(builtins, name, None)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            cls = type(str(name)[:60], (Exception,), {})
        e = cls(message)
        e._from_program = True  # raised by the program's code, not by the tests
        return e

    class Handle:
        """An object of the program's, left in its process. Equal only to itself; its attributes and methods are
        asked for over the pipe."""

        def __init__(self, hid, tname):
            object.__setattr__(self, "_hid", hid)
            object.__setattr__(self, "_tname", tname or "object")

        def __eq__(self, other):
            return isinstance(other, Handle) and other._hid == self._hid

        def __ne__(self, other):
            return not self.__eq__(other)

        def __hash__(self):
            return hash(("handle", self._hid))

        def __repr__(self):
            return "<" + self._tname + " object of the program's>"

        def __getattr__(self, attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return answer(ask({"op": "attr", "h": self._hid, "attr": attr}), [], {})

        def __setattr__(self, attr, value):
            answer(ask({"op": "setattr", "h": self._hid, "attr": attr, "value": enc(value)}), [], {})

        def __call__(self, *args, **kwargs):
            return call({"h": self._hid}, args, kwargs)

    handles = {}

    def resolve(hid, tname):
        if hid not in handles:
            handles[hid] = Handle(hid, tname)
        return handles[hid]

    def answer(msg, args, kwargs):
        if "raise" in msg:
            raise raised(*msg["raise"])
        for a, new in zip(args, msg.get("args") or []):  # arguments the program changed in place
            _update(a, dec(new, resolve))
        for (k, new) in msg.get("kwargs") or []:
            if k in kwargs:
                _update(kwargs[k], dec(new, resolve))
        return dec(msg["value"], resolve)

    def call(where, args, kwargs):
        msg = dict(where, op="call", args=[enc(a) for a in args], kwargs=[[k, enc(v)] for k, v in kwargs.items()])
        return answer(ask(msg), args, kwargs)

    loaded = _json.loads(resp.readline(_MAX_LINE) or b"{}")
    if not loaded.get("loaded"):
        err = loaded.get("error") or ["ProgramDied", "the program's process ended while loading"]
        write("ERROR program " + str(err[0]) + ": " + str(err[1]))
        return
    g = {"__name__": "__main__"}
    missing = []
    for n in wanted:
        got = ask({"op": "get", "name": n})
        if got.get("missing"):
            if not shadowed:
                missing.append(n)
        elif "module" in got:
            import importlib
            try:
                g[n] = importlib.import_module(str(got["module"]))
            except Exception:
                missing.append(n)
        else:
            g[n] = dec(got["value"], resolve)  # a function or class of the program's comes as a callable handle
    try:
        exec(code, g)
    except AssertionError as e:
        write("FAIL assertion " + str(e)[:300])
        return
    except Broken as e:
        write("ERROR program " + str(e))
        return
    except NameError as e:
        name = getattr(e, "name", None)
        if getattr(e, "_from_program", False):
            write("ERROR program NameError: " + str(e)[:300])
            return
        who = "program does not define " + str(name) if name in missing else "tests"
        write("ERROR " + ("program NameError: " if name in missing else "tests NameError: ") + str(e)[:200]
              + ("" if name in missing else " (" + who + ")"))
        return
    except BaseException as e:
        who = "program " if getattr(e, "_from_program", False) else "tests "
        write("ERROR " + who + type(e).__name__ + ": " + str(e)[:300])
        return
    write("PASS " + token)


def _update(old, new):
    """Mirror an in-place change the program made to an argument onto the judge's own object."""
    if type(old) is list and type(new) is list and old != new:
        old[:] = new
    elif type(old) is dict and type(new) is dict and old != new:
        old.clear()
        old.update(new)
    elif type(old) is set and type(new) is set and old != new:
        old.clear()
        old.update(new)


_main()
'''
