"""What every interop script shares: pypsrp objects turned into JSON for the Rust tests."""

from pypsrp.complex_objects import GenericComplexObject


def conv(o, depth=0, max_depth=12, py_types=False):
    """A pypsrp value as JSON: deserialized objects with their type names, ToString and
    adapted/extended properties (and, with py_types, the Python type pypsrp gave each
    property, which shows how it read the CLIXML), lists, dicts, scalars; bytes as hex."""
    if depth > max_depth:
        return "<deep>"

    def inner(v):
        return conv(v, depth + 1, max_depth, py_types)

    if isinstance(o, GenericComplexObject):
        r = {
            "types": o.types,
            "to_string": o.to_string,
            "adapted": {k: inner(v) for k, v in o.adapted_properties.items()},
            "extended": {k: inner(v) for k, v in o.extended_properties.items()},
        }
        if py_types:
            r["py_types"] = {
                k: type(v).__name__
                for k, v in list(o.adapted_properties.items()) + list(o.extended_properties.items())
            }
        return r
    if isinstance(o, (list, tuple)):
        return [inner(v) for v in o]
    if isinstance(o, dict):
        return {str(k): inner(v) for k, v in o.items()}
    if isinstance(o, (str, int, float, bool)) or o is None:
        return o
    if isinstance(o, bytes):
        return o.hex()
    return str(o)
