"""``/v1/keys``: API key management over HTTP (scope: admin). ``yuqing keys create`` does the
same from a shell and is how the first admin key is made."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response

from services.api.auth import ApiKey, ApiKeyCreate, ApiKeyCreated
from services.api.deps import AdminKey, KeysDep

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated,
             summary="Create an API key; the key is in this response only (scope: admin)")
async def create(body: ApiKeyCreate, keys: KeysDep, admin: AdminKey) -> ApiKeyCreated:
    return await keys.create(body.name, list(body.scopes), created_by=admin.key_id)


@router.get("", response_model=list[ApiKey],
            summary="List API keys, without secrets (scope: admin)")
async def list_(keys: KeysDep, _: AdminKey) -> list[ApiKey]:
    return await keys.list()


@router.delete("/{key_id}", status_code=204, response_class=Response,
               summary="Revoke an API key (scope: admin)")
async def revoke(key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$")], keys: KeysDep,
                 _: AdminKey) -> Response:
    if not await keys.revoke(key_id):
        raise HTTPException(404, f"API key {key_id!r} not found")
    return Response(status_code=204)
