"""The examples run end to end over HTTPS against local servers (issue 2)."""

from __future__ import annotations

import httpx

from tests.support.flows import example, run, save


def test_order_status_webhook_answers_with_the_shaped_order(server, account, target):
    _, token = account
    target.script(
        "/orders/A-17",
        (
            200,
            {},
            {
                "id": "A-17",
                "status": "shipped",
                "lines": [{"qty": 2, "price": 10.5}, {"qty": 1, "price": 4}],
            },
        ),
    )
    target.script(
        "/orders/B-2",
        (200, {}, {"id": "B-2", "status": "packing", "lines": [{"qty": 1, "price": 3}]}),
    )
    target.script("/orders/none", (404, {}, {"error": "nope"}))
    with server.client(token) as client:
        wf = save(
            client, example("order-status-webhook.yaml", **{"orders.example.test": target.url})
        )
        hook = wf["webhook_url"]
        assert hook.startswith(server.url + "/hooks/us/")

        with httpx.Client(verify=server.client_ssl(), timeout=30) as anon:
            shipped = anon.post(hook, json={"order_id": "A-17"})
            pending = anon.post(hook, json={"order_id": "B-2"})
            missing = anon.post(hook, json={"order_id": "none"})
        assert shipped.status_code == 200, shipped.text
        assert shipped.json() == {
            "order": "A-17",
            "message": "Your order is on its way",
            "items": 2,
            "total": 25,
        }
        assert shipped.headers["strict-transport-security"].startswith("max-age=63072000")
        assert pending.json()["message"] == "We are preparing your order"
        assert missing.status_code == 404
        assert missing.json() == {"error": "no such order"}

        executions = client.get("/v1/executions", params={"workflow_id": wf["id"]}).json()
        assert len(executions) == 3
        assert {e["status"] for e in executions} == {"succeeded"}
        assert {e["workflow_version"] for e in executions} == {1}
        detail = client.get(f"/v1/executions/{executions[-1]['id']}").json()
        names = [s["name"] for s in detail["steps"]]
        assert names == ["fetch_order", "shape", "shipped", "reply_shipped"]
        for step in detail["steps"]:
            assert step["status"] == "succeeded"
            assert step["attempts"] == 1
            assert step["duration_ms"] >= 0
        assert detail["steps"][0]["output"]["status"] == 200
        assert detail["steps"][0]["logs"], "the http connector logs its request"


def test_open_orders_report_posts_each_big_order(server, account, target):
    _, token = account
    target.script(
        "/orders",
        (
            200,
            {},
            {
                "orders": [
                    {"id": "o1", "total": 250},
                    {"id": "o2", "total": 20},
                    {"id": "o3", "total": 100},
                ]
            },
        ),
    )
    target.script("/hooks/orders", (204, {}, b""))
    with server.client(token) as client:
        wf = save(
            client,
            example(
                "open-orders-report.yaml",
                **{"orders.example.test": target.url, "chat.example.test": target.url},
            ),
        )
        assert wf["trigger_type"] == "schedule"
        done = run(client, wf["id"])
        assert done["status"] == "succeeded", done
    assert target.hits("/orders")[0].query == {"status": "open"}
    posted = [r.json()["text"] for r in target.hits("/hooks/orders")]
    assert posted == ["Open order o1 needs attention (0)", "Open order o3 needs attention (1)"]
    paths = [s["path"] for s in done["steps"]]
    assert "post_each[0].post_line" in paths and "post_each[1].post_line" in paths
    assert done["steps"][-1]["name"] == "post_each"
    assert done["steps"][-1]["output"]["count"] == 2


def test_callable_sub_workflow_fire_and_wait_and_fire_and_forget(server, account, target):
    _, token = account
    target.script("/contacts", (200, {}, {"company": "Initech", "employees": 900}))
    with server.client(token) as client:
        callee = save(client, example("enrich-contact.yaml", **{"crm.example.test": target.url}))
        caller_doc = example("new-signup.yaml")
        caller_doc["steps"][0]["input"]["workflow_id"] = callee["id"]
        caller = save(client, caller_doc)
        with httpx.Client(verify=server.client_ssl(), timeout=30) as anon:
            r = anon.post(caller["webhook_url"], json={"email": "ada@example.test"})
        assert r.status_code == 201, r.text
        assert r.json() == {"welcome": "ada@example.test", "tier": "enterprise"}
        assert target.hits("/contacts")[0].query == {"email": "ada@example.test"}

        # fire-and-forget: the caller gets the child's execution id; the child runs on its own
        forget = dict(caller_doc, name="Sign-up, fire and forget", trigger={"type": "manual"})
        forget["steps"] = [
            dict(caller_doc["steps"][0], input=dict(caller_doc["steps"][0]["input"], wait=False))
        ]
        wf = save(client, forget)
        done = run(client, wf["id"], {"email": "bob@example.test"})
        assert done["status"] == "succeeded", done
        child_id = done["steps"][0]["output"]["execution_id"]
        from tests.support.flows import wait_done

        child = wait_done(client, child_id)
        assert child["status"] == "succeeded"
        assert child["parent_id"] == done["id"]
        assert child["result"]["email"] == "bob@example.test"
