"""Docker hosts, the VPN server containers on them, and background batch jobs."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from vpnadmin.crypto import EncryptedJSONField, EncryptedTextField

# Docker's own rule for container names.
CONTAINER_NAME_RE = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$"
container_name_validator = RegexValidator(
    CONTAINER_NAME_RE,
    "Use letters, digits, '_', '.' or '-', starting with a letter or digit (at least two characters).",
)

LABEL_MANAGED = "vpnadmin.managed"
LABEL_SERVER = "vpnadmin.server"


class DockerHost(models.Model):
    """A Docker engine the app controls: the local socket, a TLS engine or an ssh engine."""

    name = models.CharField(max_length=64, unique=True, validators=[container_name_validator])
    base_url = models.CharField(
        max_length=255,
        help_text="unix:///var/run/docker.sock, tcp://host:2376 (TLS with client certificates) or ssh://user@host",
    )
    # Paths to PEM files on the app's machine; the key itself is never stored or shown.
    tls_ca_cert = models.CharField("TLS CA certificate path", max_length=255, blank=True)
    tls_client_cert = models.CharField("TLS client certificate path", max_length=255, blank=True)
    tls_client_key = models.CharField("TLS client key path", max_length=255, blank=True)
    network_mode = models.CharField(
        max_length=64,
        default="bridge",
        help_text="Network new containers join; 'none' publishes no ports (engines run with --bridge=none).",
    )
    # The creation policy refuses network_mode "host" unless the operator marked the host for it.
    allow_host_network = models.BooleanField(
        "allow host networking",
        default=False,
        help_text="Lets this host's containers share the host's network stack (test hosts, no bridge).",
    )
    # The host's own creation policy: it narrows the installation's (CONTAINERS_BIND_ROOTS,
    # CONTAINERS_IMAGE_PREFIXES), never widens it. Empty: the installation's alone.
    bind_roots = models.TextField(
        "directories for server data",
        blank=True,
        help_text="One a line, each under CONTAINERS_BIND_ROOTS; binds only from under these. Empty: all of those.",
    )
    image_prefixes = models.TextField(
        "image sources",
        blank=True,
        help_text="One a line (ns/ for a namespace), each within CONTAINERS_IMAGE_PREFIXES. Empty: all of those.",
    )
    max_concurrent = models.PositiveSmallIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(64)],
        help_text="Engine calls run at once on this host.",
    )
    enabled = models.BooleanField(default=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    reachable = models.BooleanField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    engine_version = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls_client_cert)


class Protocol(models.TextChoices):
    VLESS = "vless", "VLESS"
    SHADOWSOCKS = "shadowsocks", "Shadowsocks"
    WIREGUARD = "wireguard", "WireGuard"


class DesiredState(models.TextChoices):
    RUNNING = "running", "running"
    STOPPED = "stopped", "stopped"


class ObservedState(models.TextChoices):
    UNKNOWN = "unknown", "unknown"
    MISSING = "missing", "no container"
    CREATED = "created", "created"
    RUNNING = "running", "running"
    PAUSED = "paused", "paused"
    RESTARTING = "restarting", "restarting"
    EXITED = "exited", "exited"
    DEAD = "dead", "dead"
    REMOVING = "removing", "removing"


class ApplyState(models.TextChoices):
    APPLIED = "applied", "applied"
    PENDING = "pending", "pending"
    FAILED = "failed", "failed"


class VpnServer(models.Model):
    """One container serving one protocol on one host."""

    host = models.ForeignKey(DockerHost, on_delete=models.PROTECT, related_name="servers")
    name = models.CharField(max_length=128, validators=[container_name_validator])
    protocol = models.CharField(max_length=16, choices=Protocol.choices)
    image = models.CharField(max_length=255)
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    command = models.CharField(max_length=512, blank=True, help_text="Overrides the image's command (shell words).")
    # Values may be secrets: encrypted at rest (vpnadmin.crypto), the column holds one token.
    environment = EncryptedJSONField(default=dict, blank=True)
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text="Extra container options, checked by the creation policy (e.g. mem_limit, pids_limit).",
    )
    desired_state = models.CharField(max_length=16, choices=DesiredState.choices, default=DesiredState.STOPPED)
    observed_state = models.CharField(max_length=16, choices=ObservedState.choices, default=ObservedState.MISSING)
    container_id = models.CharField(max_length=64, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    observed_at = models.DateTimeField(null=True, blank=True)
    # What clients dial: the engine URL is how the panel reaches Docker, not how users reach the VPN.
    public_host = models.CharField(
        max_length=255, blank=True, help_text="Host name or address clients connect to (in links and .conf files)."
    )
    public_port = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="Port clients connect to; empty means the server's port (no NAT in between).",
    )
    # WireGuard only: the server's own key pair and the subnet its users' tunnel addresses come from.
    wg_public_key = models.CharField("WireGuard public key", max_length=44, blank=True)
    wg_private_key = EncryptedTextField("WireGuard private key", blank=True, editable=False)
    wg_subnet = models.CharField("WireGuard subnet", max_length=43, blank=True, help_text="e.g. 10.8.0.0/24")
    # The data plane: has the server been told about the current users table?
    apply_state = models.CharField(max_length=16, choices=ApplyState.choices, default=ApplyState.PENDING)
    apply_error = models.CharField(max_length=500, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True, help_text="When the server last converged.")
    dirty_at = models.DateTimeField(
        null=True, blank=True, help_text="Last users write that touched this server (an apply newer than it converges)."
    )
    config_hash = models.CharField(max_length=64, blank=True, help_text="sha256 of the last applied config.")
    # Traffic: the last raw per-user counters read (to turn them into reset-safe deltas).
    traffic_baseline = models.JSONField(default=dict, blank=True, editable=False)
    traffic_total = models.BigIntegerField(default=0, help_text="Bytes counted through this server since it was added.")
    polled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["host__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["host", "name"], name="containers_server_unique_name_per_host"),
            models.UniqueConstraint(fields=["host", "port"], name="containers_server_unique_port_per_host"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_SERVER: str(self.pk)}

    @property
    def dial_host(self) -> str:
        return self.public_host

    @property
    def dial_port(self) -> int:
        return self.public_port or self.port


class BatchAction(models.TextChoices):
    START = "start", "start"
    STOP = "stop", "stop"
    RESTART = "restart", "restart"
    CREATE = "create", "create"
    REMOVE = "remove", "remove"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    FINISHED = "finished", "finished"
    CRASHED = "crashed", "crashed"


class BatchJob(models.Model):
    """A batch too large to answer in one request, run in the background with live progress."""

    action = models.CharField(max_length=16, choices=BatchAction.choices)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    server_ids = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of the thread running it (a killed worker stops these)."
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} x{self.total} ({self.status})"

    @property
    def remaining(self) -> int:
        return max(self.total - self.done - self.unchanged - self.failed, 0)

    @property
    def processed(self) -> int:
        return self.total - self.remaining

    @property
    def is_active(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)


class Outcome(models.TextChoices):
    DONE = "done", "done"
    UNCHANGED = "unchanged", "unchanged"
    FAILED = "failed", "failed"


class BatchJobResult(models.Model):
    """One server's outcome in a background job."""

    job = models.ForeignKey(BatchJob, on_delete=models.CASCADE, related_name="results")
    server = models.ForeignKey(VpnServer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    server_name = models.CharField(max_length=128)
    host_name = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    message = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # One result per server and job, whichever attempt of a retried job wrote it.
            models.UniqueConstraint(fields=["job", "server"], name="containers_result_one_per_server"),
        ]

    def __str__(self) -> str:
        return f"{self.server_name}: {self.outcome}"
