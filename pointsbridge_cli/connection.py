"""The one place the CLI opens channels and sets call options: addresses, deadline, metadata."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.status import RemoteError, remote_error
from servicekit.tls import ClientTransport

DEFAULT_CARDPOINTS_ADDRESS = "localhost:50051"
DEFAULT_ECOMMERCE_ADDRESS = "localhost:50052"
DEFAULT_TIMEOUT_SECONDS = 10.0

_Request = TypeVar("_Request", bound=Message)
_Response = TypeVar("_Response", bound=Message)


class Service(enum.StrEnum):
    CARDPOINTS = "cardpoints"
    ECOMMERCE = "ecommerce"


# A request's proto package names the service it goes to.
_SERVICE_OF_PACKAGE = {
    cp.DESCRIPTOR.package: Service.CARDPOINTS,
    ec.DESCRIPTOR.package: Service.ECOMMERCE,
}


@dataclass(frozen=True)
class Endpoints:
    """Where the services are and how long any one call may take."""

    cardpoints: str = DEFAULT_CARDPOINTS_ADDRESS
    ecommerce: str = DEFAULT_ECOMMERCE_ADDRESS
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    # A bearer token sent with every call, and TLS (plaintext when no CA is given).
    token: str = ""
    transport: ClientTransport = field(default_factory=ClientTransport)

    def address(self, service: Service) -> str:
        return self.cardpoints if service is Service.CARDPOINTS else self.ecommerce


class CallFailed(Exception):
    """A call ended in an error status; `error` is what the status said."""

    def __init__(
        self, error: RemoteError, service: Service, endpoints: Endpoints, request: Message
    ) -> None:
        super().__init__(f"{service} call failed: {error.code.name} {error.message}")
        self.error = error
        self.service = service
        self.address = endpoints.address(service)
        self.timeout = endpoints.timeout
        self.transport = endpoints.transport
        self.request = request


@dataclass
class Connection:
    """Lazily opened channels to both services, closed together."""

    endpoints: Endpoints
    _channels: dict[Service, grpc.Channel] = field(default_factory=dict)

    def channel(self, service: Service) -> grpc.Channel:
        if service not in self._channels:
            address = self.endpoints.address(service)
            transport = self.endpoints.transport
            self._channels[service] = (
                grpc.secure_channel(address, transport.credentials())
                if transport.secure
                else grpc.insecure_channel(address)
            )
        return self._channels[service]

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata sent with every call: the bearer token, when there is one."""
        token = self.endpoints.token
        return (("authorization", f"Bearer {token}"),) if token else ()

    @property
    def cardpoints(self) -> cp_grpc.CardPointsServiceStub:
        return cp_grpc.CardPointsServiceStub(self.channel(Service.CARDPOINTS))

    @property
    def cardpoints_admin(self) -> cp_grpc.CardPointsAdminServiceStub:
        return cp_grpc.CardPointsAdminServiceStub(self.channel(Service.CARDPOINTS))

    @property
    def redemptions(self) -> ec_grpc.RedemptionServiceStub:
        return ec_grpc.RedemptionServiceStub(self.channel(Service.ECOMMERCE))

    @property
    def ecommerce_admin(self) -> ec_grpc.EcommerceAdminServiceStub:
        return ec_grpc.EcommerceAdminServiceStub(self.channel(Service.ECOMMERCE))

    def call(
        self, method: grpc.UnaryUnaryMultiCallable[_Request, _Response], request: _Request
    ) -> _Response:
        """Call with the deadline and metadata; an error status raises CallFailed."""
        try:
            return method(request, timeout=self.endpoints.timeout, metadata=self.metadata())
        except grpc.RpcError as error:
            service = _SERVICE_OF_PACKAGE[request.DESCRIPTOR.file.package]
            raise CallFailed(remote_error(error), service, self.endpoints, request) from error

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
