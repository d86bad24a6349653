"""Connexion's parameter validator, with messages that name the parameter."""
from connexion.validators import ParameterValidator


class NamedParameterValidator(ParameterValidator):
    def validate_parameter(self, parameter_type, value, param, param_name=None):
        error = super().validate_parameter(parameter_type, value, param, param_name)
        if error and not error.startswith("Missing"):
            name = param_name or param.get("name")
            return f"{parameter_type} parameter '{name}': {error.splitlines()[0]}"
        return error


VALIDATOR_MAP = {"parameter": NamedParameterValidator}
