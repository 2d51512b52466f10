"""Push rules and notifications (spec v1.19 client-server "Push Rules: API", "Listing Notifications")."""

from __future__ import annotations

from homeserver.errors import MatrixError
from homeserver.events.push_rules import client_ruleset
from homeserver.http.router import ApiRequest, Router

ATTRIBUTES = ("enabled", "actions")


def register(router: Router, hs) -> None:
    push = hs.push

    async def get_all(req: ApiRequest):
        return await push.client_rules(req.user_id)

    async def get_global(req: ApiRequest):
        return client_ruleset(await push.ruleset(req.user_id))

    def rule_path(req: ApiRequest) -> tuple[str, str]:
        return req.path_params["kind"], req.path_params["ruleId"]

    async def get_rule(req: ApiRequest):
        return await push.get_rule(req.user_id, *rule_path(req))

    async def put_rule(req: ApiRequest):
        await push.put_rule(req.user_id, *rule_path(req), req.json(), before=req.arg("before"),
                            after=req.arg("after"))
        return {}

    async def delete_rule(req: ApiRequest):
        await push.delete_rule(req.user_id, *rule_path(req))
        return {}

    def attribute_handlers(attr: str):
        async def get_attr(req: ApiRequest):
            return await push.get_attribute(req.user_id, *rule_path(req), attr)

        async def put_attr(req: ApiRequest):
            body = req.json()
            if attr not in body:
                raise MatrixError(400, "M_MISSING_PARAM", f"Missing '{attr}'")
            await push.set_attribute(req.user_id, *rule_path(req), attr, body[attr])
            return {}

        return get_attr, put_attr

    async def notifications(req: ApiRequest):
        return await push.notifications(req.requester, req.arg("from"), req.int_arg("limit", 50, minimum=0),
                                        req.arg("only"))

    router.client("GET", "/pushrules/", get_all)
    router.client("GET", "/pushrules/global/", get_global)
    router.client("GET", "/pushrules/global/{kind}/{ruleId}", get_rule)
    router.client("PUT", "/pushrules/global/{kind}/{ruleId}", put_rule)
    router.client("DELETE", "/pushrules/global/{kind}/{ruleId}", delete_rule)
    for attr in ATTRIBUTES:
        get_attr, put_attr = attribute_handlers(attr)
        router.client("GET", f"/pushrules/global/{{kind}}/{{ruleId}}/{attr}", get_attr)
        router.client("PUT", f"/pushrules/global/{{kind}}/{{ruleId}}/{attr}", put_attr)
    router.client("GET", "/notifications", notifications)
