"""The layer registry: the class names a saved model may refer to.

Every concrete ``Layer`` subclass is registered when its class statement runs.
Keys never collide silently:

* npnet's own layers (defined in the ``layers`` and ``models`` packages) keep
  their short names (``"Dense"``), as saved files have always used;
* any other class is keyed by its qualified name, ``module.qualname``
  (``"mypackage.blocks.Swish"``), so a user class called ``ReLU`` never
  replaces the built-in one.

Re-running a class statement under the same key (``importlib.reload``, a
notebook cell run twice) registers the new definition in place of the old one:
it is the same class, edited. Two different built-in classes with one short
name are refused. Private classes (name starting with ``_``) and bases declared
``class Base(Layer, register=False)`` are not registered, so no file can build
them.
"""
BUILTIN_PACKAGES = ("layers", "models")

LAYER_REGISTRY = {}


def is_builtin(cls):
    return cls.__module__.split(".")[0] in BUILTIN_PACKAGES


def registry_key(cls):
    """The name under which ``cls`` is registered and saved."""
    return cls.__name__ if is_builtin(cls) else f"{cls.__module__}.{cls.__qualname__}"


def register_layer(cls):
    """Register ``cls`` under :func:`registry_key`; private classes are skipped."""
    if cls.__name__.startswith("_"):
        return cls
    key = registry_key(cls)
    old = LAYER_REGISTRY.get(key)
    if old is not None and old is not cls and \
            (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise TypeError(f"layer name {key!r} is already registered for {old.__module__}.{old.__qualname__}; "
                        f"rename {cls.__module__}.{cls.__qualname__}")
    LAYER_REGISTRY[key] = cls
    return cls


def lookup_layer(name):
    """The registered class for a saved name, or None.

    A bare name that is not a built-in may come from a file saved before user
    classes were keyed by qualified name: it resolves to the one registered
    user class of that name, and is refused when several share it.
    """
    cls = LAYER_REGISTRY.get(name)
    if cls is not None or "." in name:
        return cls
    matches = [c for c in LAYER_REGISTRY.values() if not is_builtin(c) and c.__name__ == name]
    if len(matches) > 1:
        keys = sorted(registry_key(c) for c in matches)
        raise ValueError(f"layer class {name!r} is ambiguous: registered as {keys}")
    return matches[0] if matches else None
