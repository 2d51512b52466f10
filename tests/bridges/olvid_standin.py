"""A stand-in Olvid daemon for the bridge tests, built on the gRPC servicer base classes that the
``olvid-bot`` package ships (its generated code): the unmodified ``OlvidClient`` inside the bridge
talks to it exactly as to a real daemon.

It holds one bot identity's state in memory (contacts, discussions, groups, messages, attachments,
reactions), and that state survives ``restart()`` as a real daemon's database does. The test plays
the contacts through ``contact_sends``, ``contact_edits`` ... and reads what the bot identity sent
with ``wait_outbound``. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent import futures
from typing import Callable

import grpc
from olvid.protobuf.olvid.daemon.command.v1 import (attachment_commands_pb2 as att_cmd,
                                                     contact_commands_pb2 as contact_cmd,
                                                     discussion_commands_pb2 as disc_cmd,
                                                     group_commands_pb2 as group_cmd,
                                                     message_commands_pb2 as msg_cmd,
                                                     tool_commands_pb2 as tool_cmd)
from olvid.protobuf.olvid.daemon.datatypes.v1 import (attachment_pb2, contact_pb2, discussion_pb2, group_pb2,
                                                       message_pb2)
from olvid.protobuf.olvid.daemon.notification.v1 import (attachment_notifications_pb2 as att_ntf,
                                                          contact_notifications_pb2 as contact_ntf,
                                                          discussion_notifications_pb2 as disc_ntf,
                                                          group_notifications_pb2 as group_ntf,
                                                          message_notifications_pb2 as msg_ntf)
from olvid.protobuf.olvid.daemon.services.v1 import command_service_pb2_grpc as cmd_svc
from olvid.protobuf.olvid.daemon.services.v1 import notification_service_pb2_grpc as ntf_svc

from tests.integration.harness import wait_notified

INBOUND, OUTBOUND = message_pb2.MessageId.TYPE_INBOUND, message_pb2.MessageId.TYPE_OUTBOUND
CHUNK = 1 << 20


def now_ms() -> int:
    return int(time.time() * 1000)


class State:
    """The daemon's database: everything under one lock, notifications fanned out to subscribers."""

    def __init__(self):
        self.lock = threading.RLock()
        self.contacts: dict[int, contact_pb2.Contact] = {}
        self.photos: dict[int, bytes] = {}
        self.discussions: dict[int, discussion_pb2.Discussion] = {}
        self.groups: dict[int, group_pb2.Group] = {}
        self.messages: dict[tuple[int, int], message_pb2.Message] = {}
        self.attachments: dict[tuple[int, int], tuple[attachment_pb2.Attachment, bytes]] = {}
        self.counters = {INBOUND: 0, OUTBOUND: 0, "att": 0}
        self.subscribers: dict[str, list[queue.Queue]] = {}
        self.outbound_event = threading.Condition(self.lock)
        self.downloading: set[tuple[int, int]] = set()  # inbound attachments the daemon does not hold yet

    def next_id(self, key) -> int:
        self.counters[key] += 1
        return self.counters[key]

    def publish(self, kind: str, notification) -> None:
        with self.lock:
            for q in self.subscribers.get(kind, []):
                q.put(notification)

    def subscribe(self, kind: str) -> queue.Queue:
        q: queue.Queue = queue.Queue()
        with self.lock:
            self.subscribers.setdefault(kind, []).append(q)
        return q

    def unsubscribe(self, kind: str, q: queue.Queue) -> None:
        with self.lock:
            if q in self.subscribers.get(kind, []):
                self.subscribers[kind].remove(q)

    def message(self, message_id: message_pb2.MessageId, context) -> message_pb2.Message:
        return found(self.messages, (message_id.type, message_id.id), "message", context)


def found(table: dict, key, what: str, context):
    """``table[key]``, or the call ends with NOT_FOUND as the daemon answers."""
    value = table.get(key)
    if value is None:
        context.abort(grpc.StatusCode.NOT_FOUND, f"{what} not found")
    return value


def _stream(state: State, kind: str, context):
    """Yield the notifications of one subscription until the client or the server goes away."""
    q = state.subscribe(kind)
    try:
        while context.is_active():
            try:
                yield q.get(timeout=0.1)
            except queue.Empty:
                continue
    finally:
        state.unsubscribe(kind, q)


class _Auth:
    def __init__(self, state: State, client_key: str):
        self.state, self.client_key = state, client_key

    def check(self, context) -> None:
        if dict(context.invocation_metadata()).get("daemon-client-key") != self.client_key:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid client key")


class Tools(_Auth, cmd_svc.ToolCommandServiceServicer):
    def Ping(self, request, context):
        self.check(context)
        return tool_cmd.PingResponse()


class Contacts(_Auth, cmd_svc.ContactCommandServiceServicer):
    def ContactGet(self, request, context):
        self.check(context)
        return contact_cmd.ContactGetResponse(contact=found(self.state.contacts, request.contact_id, "contact",
                                                            context))

    def ContactList(self, request, context):
        self.check(context)
        yield contact_cmd.ContactListResponse(contacts=list(self.state.contacts.values()))

    def ContactDownloadPhoto(self, request, context):
        self.check(context)
        return contact_cmd.ContactDownloadPhotoResponse(photo=self.state.photos.get(request.contact_id, b""))


class Groups(_Auth, cmd_svc.GroupCommandServiceServicer):
    def GroupGet(self, request, context):
        self.check(context)
        return group_cmd.GroupGetResponse(group=found(self.state.groups, request.group_id, "group", context))


class Discussions(_Auth, cmd_svc.DiscussionCommandServiceServicer):
    def DiscussionGet(self, request, context):
        self.check(context)
        return disc_cmd.DiscussionGetResponse(discussion=found(self.state.discussions, request.discussion_id,
                                                               "discussion", context))

    def DiscussionList(self, request, context):
        self.check(context)
        yield disc_cmd.DiscussionListResponse(discussions=list(self.state.discussions.values()))

    def DiscussionGetByGroup(self, request, context):
        self.check(context)
        for d in self.state.discussions.values():
            if d.group_id == request.group_id:
                return disc_cmd.DiscussionGetByGroupResponse(discussion=d)
        context.abort(grpc.StatusCode.NOT_FOUND, "discussion not found")


class Messages(_Auth, cmd_svc.MessageCommandServiceServicer):
    def MessageList(self, request, context):
        self.check(context)
        f = request.filter
        with self.state.lock:
            found = [m for m in self.state.messages.values()
                     if (not f.type or m.id.type == f.type) and (not f.discussion_id or m.discussion_id == f.discussion_id)
                     and m.timestamp >= f.min_timestamp and (not f.max_timestamp or m.timestamp <= f.max_timestamp)]
        for start in range(0, len(found), 50):
            yield msg_cmd.MessageListResponse(messages=found[start:start + 50])

    def MessageGet(self, request, context):
        self.check(context)
        return msg_cmd.MessageGetResponse(message=self.state.message(request.message_id, context))

    def _outbound(self, context, discussion_id: int, body: str, reply_id, attachments=()) -> message_pb2.Message:
        state = self.state
        if discussion_id not in state.discussions:
            context.abort(grpc.StatusCode.NOT_FOUND, "discussion not found")
        with state.lock:
            mid = message_pb2.MessageId(type=OUTBOUND, id=state.next_id(OUTBOUND))
            m = message_pb2.Message(id=mid, discussion_id=discussion_id, sender_id=0, body=body, timestamp=now_ms(),
                                    sort_index=float(mid.id), attachments_count=len(attachments))
            if reply_id is not None and reply_id.id:
                m.replied_message_id.CopyFrom(reply_id)
            state.messages[(OUTBOUND, mid.id)] = m
            for filename, data in attachments:
                aid = attachment_pb2.AttachmentId(type=attachment_pb2.AttachmentId.TYPE_OUTBOUND,
                                                  id=state.next_id("att"))
                state.attachments[(aid.type, aid.id)] = (attachment_pb2.Attachment(
                    id=aid, discussion_id=discussion_id, message_id=mid, file_name=filename,
                    mime_type="application/octet-stream", size=len(data)), data)
            state.outbound_event.notify_all()
        state.publish("sent", msg_ntf.MessageSentNotification(message=m))
        return m

    def MessageSend(self, request, context):
        self.check(context)
        reply = request.reply_id if request.HasField("reply_id") else None
        return msg_cmd.MessageSendResponse(message=self._outbound(context, request.discussion_id, request.body, reply))

    def MessageSendWithAttachments(self, request_iterator, context):
        self.check(context)
        metadata, files, current = None, [], bytearray()
        for request in request_iterator:
            if request.HasField("metadata"):
                metadata = request.metadata
            elif request.file_delimiter:
                files.append(bytes(current))
                current = bytearray()
            else:
                current += request.payload
        if metadata is None or len(files) != len(metadata.files):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "metadata and files do not match")
        for declared, data in zip(metadata.files, files):
            if declared.file_size != len(data):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{declared.filename}: size mismatch")
        reply = metadata.reply_id if metadata.HasField("reply_id") else None
        m = self._outbound(context, metadata.discussion_id, metadata.body, reply,
                           [(f.filename, d) for f, d in zip(metadata.files, files)])
        atts = [a for a, _ in self.state.attachments.values() if a.message_id == m.id]
        return msg_cmd.MessageSendWithAttachmentsResponse(message=m, attachments=atts)

    def MessageReact(self, request, context):
        self.check(context)
        with self.state.lock:
            m = self.state.message(request.message_id, context)
            kept = [r for r in m.reactions if r.contact_id != 0]
            del m.reactions[:]
            m.reactions.extend(kept)
            if request.reaction:
                m.reactions.append(message_pb2.MessageReaction(contact_id=0, reaction=request.reaction,
                                                               timestamp=now_ms()))
            self.state.outbound_event.notify_all()
        return msg_cmd.MessageReactResponse()

    def MessageUpdateBody(self, request, context):
        self.check(context)
        with self.state.lock:
            m = self.state.message(request.message_id, context)
            previous, m.body, m.edited_body = m.body, request.updated_body, True
            self.state.outbound_event.notify_all()
        self.state.publish("body", msg_ntf.MessageBodyUpdatedNotification(message=m, previous_body=previous))
        return msg_cmd.MessageUpdateBodyResponse()

    def MessageDelete(self, request, context):
        self.check(context)
        with self.state.lock:
            m = self.state.message(request.message_id, context)
            del self.state.messages[(m.id.type, m.id.id)]
            self.state.outbound_event.notify_all()
        self.state.publish("deleted", msg_ntf.MessageDeletedNotification(message=m))
        return msg_cmd.MessageDeleteResponse()


class Attachments(_Auth, cmd_svc.AttachmentCommandServiceServicer):
    def AttachmentList(self, request, context):
        self.check(context)
        f = request.filter
        with self.state.lock:
            found = [a for a, _ in self.state.attachments.values()
                     if not f.HasField("message_id") or a.message_id == f.message_id]
        yield att_cmd.AttachmentListResponse(attachments=found)

    def AttachmentDownload(self, request, context):
        self.check(context)
        key = (request.attachment_id.type, request.attachment_id.id)
        data = found(self.state.attachments, key, "attachment", context)[1]
        if key in self.state.downloading:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "attachment not downloaded yet")
        for start in range(0, len(data), CHUNK):
            yield att_cmd.AttachmentDownloadResponse(chunk=data[start:start + CHUNK])


def _subscription(kind: str) -> Callable:
    def handler(self, request, context):
        self.check(context)
        yield from _stream(self.state, kind, context)
    return handler


class MessageNotifications(_Auth, ntf_svc.MessageNotificationServiceServicer):
    MessageReceived = _subscription("received")
    MessageSent = _subscription("sent")
    MessageDeleted = _subscription("deleted")
    MessageBodyUpdated = _subscription("body")
    MessageDelivered = _subscription("delivered")
    MessageRead = _subscription("read")
    MessageReactionAdded = _subscription("reaction_added")
    MessageReactionUpdated = _subscription("reaction_updated")
    MessageReactionRemoved = _subscription("reaction_removed")


class AttachmentNotifications(_Auth, ntf_svc.AttachmentNotificationServiceServicer):
    AttachmentReceived = _subscription("attachment_received")


class DiscussionNotifications(_Auth, ntf_svc.DiscussionNotificationServiceServicer):
    DiscussionTitleUpdated = _subscription("title")
    DiscussionNew = _subscription("discussion_new")


class GroupNotifications(_Auth, ntf_svc.GroupNotificationServiceServicer):
    GroupMemberJoined = _subscription("member_joined")
    GroupMemberLeft = _subscription("member_left")


class ContactNotifications(_Auth, ntf_svc.ContactNotificationServiceServicer):
    ContactDetailsUpdated = _subscription("contact_details")
    ContactPhotoUpdated = _subscription("contact_photo")


SERVICERS = [
    (Tools, cmd_svc.add_ToolCommandServiceServicer_to_server),
    (Contacts, cmd_svc.add_ContactCommandServiceServicer_to_server),
    (Groups, cmd_svc.add_GroupCommandServiceServicer_to_server),
    (Discussions, cmd_svc.add_DiscussionCommandServiceServicer_to_server),
    (Messages, cmd_svc.add_MessageCommandServiceServicer_to_server),
    (Attachments, cmd_svc.add_AttachmentCommandServiceServicer_to_server),
    (MessageNotifications, ntf_svc.add_MessageNotificationServiceServicer_to_server),
    (AttachmentNotifications, ntf_svc.add_AttachmentNotificationServiceServicer_to_server),
    (DiscussionNotifications, ntf_svc.add_DiscussionNotificationServiceServicer_to_server),
    (GroupNotifications, ntf_svc.add_GroupNotificationServiceServicer_to_server),
    (ContactNotifications, ntf_svc.add_ContactNotificationServiceServicer_to_server),
]


class StandinDaemon:
    def __init__(self, port: int, client_key: str):
        self.port, self.client_key = port, client_key
        self.state = State()
        self._server: grpc.Server | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "StandinDaemon":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=48),
                             options=[("grpc.max_receive_message_length", 64 << 20)])
        for servicer, add in SERVICERS:
            add(servicer(self.state, self.client_key), server)
        server.add_insecure_port(self.url)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def restart(self) -> None:
        self.stop()
        self.start()

    # -- the world on the Olvid side, as the test plays it --------------------------------------
    def add_contact(self, name: str, photo: bytes = b"") -> tuple[int, int]:
        """A contact with a one-to-one discussion: (contact_id, discussion_id)."""
        with self.state.lock:
            cid = len(self.state.contacts) + 1
            self.state.contacts[cid] = contact_pb2.Contact(id=cid, display_name=name, has_one_to_one_discussion=True,
                                                           has_a_photo=bool(photo))
            if photo:
                self.state.photos[cid] = photo
            did = len(self.state.discussions) + 1
            self.state.discussions[did] = discussion_pb2.Discussion(id=did, title=name, contact_id=cid)
        return cid, did

    def add_group(self, name: str, members: list[int]) -> tuple[int, int]:
        with self.state.lock:
            gid = len(self.state.groups) + 1
            self.state.groups[gid] = group_pb2.Group(id=gid, name=name, members=[
                group_pb2.GroupMember(contact_id=c) for c in members])
            did = len(self.state.discussions) + 1
            self.state.discussions[did] = discussion_pb2.Discussion(id=did, title=name, group_id=gid)
        return gid, did

    def contact_sends(self, contact_id: int, discussion_id: int, body: str, *, reply_to=None,
                      attachments: list[tuple[str, str, bytes]] = (), timestamp: int | None = None,
                      notify: bool = True, downloaded: bool = True) -> message_pb2.Message:
        """A contact's message arrives; ``notify=False`` when nobody is listening (the bridge is down);
        ``downloaded=False``: its attachments come later (``attachments_arrive``)."""
        state = self.state
        with state.lock:
            mid = message_pb2.MessageId(type=INBOUND, id=state.next_id(INBOUND))
            m = message_pb2.Message(id=mid, discussion_id=discussion_id, sender_id=contact_id, body=body,
                                    timestamp=timestamp or now_ms(), sort_index=float(mid.id),
                                    attachments_count=len(attachments))
            if reply_to is not None:
                m.replied_message_id.CopyFrom(reply_to)
            for filename, mime, data in attachments:
                aid = attachment_pb2.AttachmentId(type=attachment_pb2.AttachmentId.TYPE_INBOUND,
                                                  id=state.next_id("att"))
                state.attachments[(aid.type, aid.id)] = (attachment_pb2.Attachment(
                    id=aid, discussion_id=discussion_id, message_id=mid, file_name=filename, mime_type=mime,
                    size=len(data)), data)
                if not downloaded:
                    state.downloading.add((aid.type, aid.id))
            state.messages[(INBOUND, mid.id)] = m
        if notify:
            state.publish("received", msg_ntf.MessageReceivedNotification(message=m))
        return m

    def attachments_arrive(self, message: message_pb2.Message) -> None:
        with self.state.lock:
            arrived = [a for a, _ in self.state.attachments.values() if a.message_id == message.id]
            self.state.downloading -= {(a.id.type, a.id.id) for a in arrived}
        for a in arrived:
            self.state.publish("attachment_received", att_ntf.AttachmentReceivedNotification(attachment=a))

    def contact_edits(self, message: message_pb2.Message, body: str) -> None:
        with self.state.lock:
            m = self.state.messages[(message.id.type, message.id.id)]
            previous, m.body, m.edited_body = m.body, body, True
        self.state.publish("body", msg_ntf.MessageBodyUpdatedNotification(message=m, previous_body=previous))

    def contact_deletes(self, message: message_pb2.Message) -> None:
        with self.state.lock:
            m = self.state.messages.pop((message.id.type, message.id.id))
        self.state.publish("deleted", msg_ntf.MessageDeletedNotification(message=m))

    def contact_reacts(self, contact_id: int, message_id: message_pb2.MessageId, reaction: str) -> None:
        with self.state.lock:
            m = self.state.messages[(message_id.type, message_id.id)]
            r = message_pb2.MessageReaction(contact_id=contact_id, reaction=reaction, timestamp=now_ms())
            m.reactions.append(r)
        self.state.publish("reaction_added", msg_ntf.MessageReactionAddedNotification(message=m, reaction=r))

    def contact_reads(self, message_id: message_pb2.MessageId) -> None:
        m = self.state.messages[(message_id.type, message_id.id)]
        self.state.publish("delivered", msg_ntf.MessageDeliveredNotification(message=m))
        self.state.publish("read", msg_ntf.MessageReadNotification(message=m))

    def contact_renamed(self, contact_id: int, name: str) -> None:
        with self.state.lock:
            contact = self.state.contacts[contact_id]
            previous = type(contact.details)()
            previous.CopyFrom(contact.details)
            contact.display_name = name
        self.state.publish("contact_details", contact_ntf.ContactDetailsUpdatedNotification(
            contact=contact, previous_details=previous))

    def rename(self, discussion_id: int, title: str) -> None:
        with self.state.lock:
            d = self.state.discussions[discussion_id]
            previous, d.title = d.title, title
        self.state.publish("title", disc_ntf.DiscussionTitleUpdatedNotification(discussion=d, previous_title=previous))

    def member_joins(self, group_id: int, contact_id: int) -> None:
        with self.state.lock:
            g = self.state.groups[group_id]
            member = group_pb2.GroupMember(contact_id=contact_id)
            g.members.append(member)
        self.state.publish("member_joined", group_ntf.GroupMemberJoinedNotification(group=g, member=member))

    def member_leaves(self, group_id: int, contact_id: int) -> None:
        with self.state.lock:
            g = self.state.groups[group_id]
            kept = [m for m in g.members if m.contact_id != contact_id]
            del g.members[:]
            g.members.extend(kept)
        self.state.publish("member_left", group_ntf.GroupMemberLeftNotification(
            group=g, member=group_pb2.GroupMember(contact_id=contact_id)))

    def subscribers(self, kind: str = "received") -> int:
        with self.state.lock:
            return len(self.state.subscribers.get(kind, []))

    def wait(self, predicate: Callable[[], object], timeout: float = 30.0):
        """Wait until ``predicate()`` (run under the state lock) is truthy, woken by every change the
        bot identity makes; its value."""
        return wait_notified(self.state.outbound_event, predicate,
                             lambda: "the stand-in daemon never saw the expected change", timeout, recheck_s=0.5)

    def outbound(self, discussion_id: int) -> list[message_pb2.Message]:
        with self.state.lock:
            return sorted((m for (t, _), m in self.state.messages.items()
                           if t == OUTBOUND and m.discussion_id == discussion_id), key=lambda m: m.id.id)

    def attachment_data(self, message: message_pb2.Message) -> list[tuple[str, bytes]]:
        with self.state.lock:
            return [(a.file_name, d) for a, d in self.state.attachments.values() if a.message_id == message.id]
