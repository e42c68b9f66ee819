"""Forms for hosts, servers and batch actions: every bad input is a clear message on the form."""

from __future__ import annotations

import json
import re
from typing import Any, cast

import docker
from django import forms

from containers.engine import client_for, describe_engine_error
from containers.models import BatchAction, DockerHost, VpnServer
from containers.policy import (
    create_policy_errors,
    engine_url_errors,
    host_network_errors,
    host_policy_errors,
    image_errors,
)

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NETWORK = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


class DockerHostForm(forms.ModelForm):
    class Meta:
        model = DockerHost
        fields = [
            "name",
            "base_url",
            "tls_ca_cert",
            "tls_client_cert",
            "tls_client_key",
            "network_mode",
            "allow_host_network",
            "bind_roots",
            "image_prefixes",
            "max_concurrent",
        ]
        labels = {"base_url": "Engine address"}
        widgets = {
            "tls_client_key": forms.TextInput(attrs={"autocomplete": "off"}),
            "bind_roots": forms.Textarea(attrs={"rows": 2}),
            "image_prefixes": forms.Textarea(attrs={"rows": 2}),
        }

    def clean_network_mode(self) -> str:
        value = self.cleaned_data["network_mode"].strip()
        if value.startswith("container:"):
            raise forms.ValidationError("Sharing another container's network is refused.")
        if not _NETWORK.match(value):
            raise forms.ValidationError("Give a network name such as bridge, none or vpn-net.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}  # ModelForm returns cleaned_data; None only in stubs
        problems = host_policy_errors(
            bind_roots_text=data.get("bind_roots") or "", image_prefixes_text=data.get("image_prefixes") or ""
        )
        for field, messages in problems.items():
            self.add_error(field, messages)
        if data.get("network_mode") == "host" and not data.get("allow_host_network"):
            self.add_error(
                "network_mode",
                'Host networking is refused unless this host is marked "allow host networking" '
                "(its containers then share the host's network stack).",
            )
        base_url = (data.get("base_url") or "").strip()
        if base_url:
            data["base_url"] = base_url
            for message in engine_url_errors(
                base_url,
                tls_client_cert=data.get("tls_client_cert", ""),
                tls_client_key=data.get("tls_client_key", ""),
                tls_ca_cert=data.get("tls_ca_cert", ""),
            ):
                self.add_error("base_url", message)
        return data


def _parse_environment(text: str) -> dict[str, str]:
    environment: dict[str, str] = {}
    errors: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _ENV_KEY.match(key):
            errors.append(f"Line {number}: write NAME=value (NAME of letters, digits and '_').")
            continue
        environment[key] = value.strip()
    if errors:
        raise forms.ValidationError(errors)
    return environment


class VpnServerForm(forms.ModelForm):
    environment_text = forms.CharField(
        label="Environment",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One NAME=value a line. Values are passed to the container and never shown on pages.",
    )
    options_text = forms.CharField(
        label="Container options",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text='JSON, e.g. {"mem_limit": "256m", "pids_limit": 100}. Binds only from the directories '
        "configured for server data; privileged mode and host namespaces are refused; capabilities and "
        "devices only as the server's kind declares.",
    )
    create_now = forms.BooleanField(label="Create the container now", required=False, initial=True)

    class Meta:
        model = VpnServer
        fields = ["host", "name", "protocol", "image", "port", "command"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["host"]).queryset = DockerHost.objects.filter(enabled=True)

    def clean_environment_text(self) -> dict[str, str]:
        return _parse_environment(self.cleaned_data.get("environment_text") or "")

    def clean_options_text(self) -> dict[str, Any]:
        text = (self.cleaned_data.get("options_text") or "").strip()
        if not text:
            return {}
        try:
            options = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
        if not isinstance(options, dict):
            raise forms.ValidationError("Options must be a JSON object.")
        return options  # checked against the policy in clean(), which knows the host and kind

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}  # ModelForm returns cleaned_data; None only in stubs
        host: DockerHost | None = data.get("host")
        if host is None:
            return data
        name, port, image = data.get("name"), data.get("port"), (data.get("image") or "").strip()
        if "options_text" in data:
            problems = create_policy_errors(data["options_text"], protocol=data.get("protocol") or "", host=host)
            if problems:
                self.add_error("options_text", problems)
        for problem in host_network_errors(host):
            self.add_error("host", problem)
        if image:
            for problem in image_errors(image, host=host):
                self.add_error("image", problem[:1].upper() + problem[1:] + ".")
        if name and VpnServer.objects.filter(host=host, name=name).exists():
            self.add_error("name", f"A server named {name} already exists on host {host.name}.")
        if port:
            taken = VpnServer.objects.filter(host=host, port=port).first()
            if taken is not None:
                self.add_error("port", f"Port {port} is already used by server {taken.name} on host {host.name}.")
        if image and not self.has_error("image"):
            data["image"] = image
            try:
                client_for(host).inspect_image(image)
            except docker.errors.ImageNotFound:
                self.add_error("image", f"Image {image} is not on host {host.name}: pull or build it there first.")
            except docker.errors.APIError as exc:
                self.add_error("image", f"Image {image} cannot be used: {describe_engine_error(exc)}.")
            except Exception as exc:  # the engine is down or slow: say so on the form
                self.add_error("image", f"Host {host.name} cannot check the image now: {describe_engine_error(exc)}.")
        return data


class BatchForm(forms.Form):
    action = forms.ChoiceField(choices=BatchAction.choices)
    server = forms.TypedMultipleChoiceField(coerce=int, choices=(), error_messages={"required": "Select servers."})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Any id is acceptable as a choice; unknown ids are ignored by the query.
        values = self.data.getlist("server") if hasattr(self.data, "getlist") else []
        server = cast(forms.ChoiceField, self.fields["server"])
        server.choices = [(value, value) for value in values if str(value).isdigit()]
        self.fields["server"].error_messages["invalid_choice"] = "Servers are given by their numeric id."
