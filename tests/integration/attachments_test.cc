// API.md "Attachments" over real HTTP, on the store of the run: uploads and downloads (bytes
// exact across chunk boundaries), the download headers, Range, ETag and 304, who may download,
// attaching to messages and its rules, deletion, the sweep of orphans and of deleted
// messages' uploads, bad input, and an upload the client abandons halfway.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "ws_client.h"

namespace mmchat::test {
namespace {

constexpr int64_t kChunk = 256 * 1024;  // domain::kUploadChunkBytes

// `n` bytes every one of which says where it is, NUL bytes included: a byte read from the
// wrong offset, dropped or repeated shows.
std::string Bytes(size_t n, unsigned seed = 1) {
  std::string out(n, '\0');
  uint32_t x = seed * 2654435761u;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<char>((x >> 24) ^ (i & 0xFF));
  }
  return out;
}

// POST /api/uploads with a chunked body (the client's Request always sends a Content-Length),
// on a connection of its own: the answer.
HttpResult UploadChunked(uint16_t port, const std::string& token, const std::string& bytes) {
  namespace net = boost::asio;
  namespace bhttp = boost::beast::http;
  net::io_context io;
  net::ip::tcp::socket socket(io);
  socket.connect({net::ip::make_address("127.0.0.1"), port});
  std::string request = "POST /api/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
                        "\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (size_t at = 0; at < bytes.size(); at += 10000) {
    const std::string piece = bytes.substr(at, 10000);
    char size[32];
    snprintf(size, sizeof size, "%zx\r\n", piece.size());
    request += size + piece + "\r\n";
  }
  request += "0\r\n\r\n";
  net::write(socket, net::buffer(request));
  boost::beast::flat_buffer buffer;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(socket, buffer, res);
  return ToResult(res);
}

// POST /api/uploads with `Expect: 100-continue` and only the headers: the first answer, which is
// the `100` when the server would take the body, or its refusal from the headers alone.
HttpResult UploadHeadersOnly(uint16_t port, const std::string& token, size_t content_length) {
  namespace net = boost::asio;
  namespace bhttp = boost::beast::http;
  net::io_context io;
  net::ip::tcp::socket socket(io);
  socket.connect({net::ip::make_address("127.0.0.1"), port});
  net::write(socket,
             net::buffer("POST /api/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
                         "\r\nContent-Type: text/plain\r\nExpect: 100-continue\r\n"
                         "Content-Length: " +
                         std::to_string(content_length) + "\r\n\r\n"));
  boost::beast::flat_buffer buffer;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(socket, buffer, res);
  return ToResult(res);
}

class AttachmentsTest : public ::testing::Test {
 protected:
  explicit AttachmentsTest(std::map<std::string, std::string> env = {})
      : server_(ServerOptions{.env = WithLimits(std::move(env))}), client_(server_.port()) {}

  static std::map<std::string, std::string> WithLimits(std::map<std::string, std::string> env) {
    for (const auto& [k, v] : kNoAbuseLimits) env.emplace(k, v);
    return env;
  }

  void SetUp() override {
    alice_ = SignUp(server_, client_, "alice");
    bob_ = SignUp(server_, client_, "bob");
    carol_ = SignUp(server_, client_, "carol");
    auto g = client_.Post("/api/conversations/group",
                          {{"name", "team"}, {"member_ids", {bob_.id, carol_.id}}}, alice_.token);
    ASSERT_EQ(g.status, 201) << g.body;
    group_ = g.json["id"].get<int64_t>();
  }

  HttpResult Upload(const Account& a, const std::string& bytes,
                    const std::string& content_type = "application/pdf",
                    const std::string& query = "") {
    return client_.Request("POST", "/api/uploads" + query, bytes, a.token,
                           {{"Content-Type", content_type}});
  }
  // Uploads and returns the Attachment.
  Json Uploaded(const Account& a, const std::string& bytes,
                const std::string& content_type = "application/pdf",
                const std::string& query = "") {
    auto r = Upload(a, bytes, content_type, query);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json;
  }
  HttpResult Download(const Account& a, const std::string& id,
                      const std::map<std::string, std::string>& headers = {}) {
    return client_.Request("GET", "/api/uploads/" + id, "", a.token, headers);
  }
  HttpResult Send(const Account& a, const Json& attachments, const std::string& content = "") {
    return client_.Post(
        "/api/messages",
        {{"conversation_id", group_}, {"content", content}, {"attachments", attachments}}, a.token);
  }

  TestServer server_;
  HttpClient client_;
  Account alice_, bob_, carol_;
  int64_t group_ = 0;
};

TEST_F(AttachmentsTest, UploadedBytesComeBackExactlyWithTheAttachment) {
  // Empty, tiny, one chunk exactly, one byte over, and several chunks with a short last one.
  for (size_t size :
       {size_t{0}, size_t{1}, size_t(kChunk), size_t(kChunk + 1), size_t(3 * kChunk + 12345)}) {
    SCOPED_TRACE(size);
    const std::string bytes = Bytes(size, static_cast<unsigned>(size));
    auto r = Upload(alice_, bytes, "application/pdf", "?filename=plan%20v2.pdf");
    ASSERT_EQ(r.status, 201) << r.body;
    const std::string id = r.json["id"];
    EXPECT_GE(id.size(), 22u);  // at least 128 random bits, base64url
    EXPECT_EQ(
        id.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        std::string::npos);
    EXPECT_EQ(r.json["filename"], "plan v2.pdf");
    EXPECT_EQ(r.json["content_type"], "application/pdf");
    EXPECT_EQ(r.json["size"], size);
    EXPECT_TRUE(r.json["created_at"].is_string());
    EXPECT_EQ(r.json["url"], "/api/uploads/" + id);
    EXPECT_EQ(r.headers["location"], "/api/uploads/" + id);

    auto d = Download(alice_, id);
    ASSERT_EQ(d.status, 200);
    EXPECT_TRUE(d.body == bytes) << "the downloaded bytes differ";
    EXPECT_EQ(d.headers["content-length"], std::to_string(size));
    EXPECT_EQ(d.headers["content-type"], "application/pdf");
  }
}

TEST_F(AttachmentsTest, ADownloadCarriesTheHeadersThatKeepItFromRunningAsAPage) {
  const Json pdf =
      Uploaded(alice_, Bytes(1000), "application/pdf", "?filename=r%C3%A9sum%C3%A9.pdf");
  auto d = Download(alice_, pdf["id"]);
  ASSERT_EQ(d.status, 200);
  EXPECT_EQ(d.headers["x-content-type-options"], "nosniff");
  EXPECT_EQ(d.headers["content-security-policy"], "sandbox");
  EXPECT_EQ(d.headers["etag"], "\"" + pdf["id"].get<std::string>() + "\"");
  EXPECT_EQ(d.headers["accept-ranges"], "bytes");
  EXPECT_EQ(d.headers["content-disposition"],
            "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf");

  // HTML is a download, never a page of this origin; without a filename, just "attachment".
  const Json html = Uploaded(alice_, "<script>alert(1)</script>", "text/html");
  d = Download(alice_, html["id"]);
  EXPECT_EQ(d.headers["content-type"], "text/html");
  EXPECT_EQ(d.headers["content-disposition"], "attachment");
  EXPECT_EQ(d.headers["content-security-policy"], "sandbox");
  EXPECT_EQ(d.headers["x-content-type-options"], "nosniff");
  EXPECT_TRUE(html["filename"].is_null());

  // The four image types are shown in place; others (SVG can hold scripts) are not.
  for (const std::string& type :
       std::vector<std::string>{"image/png", "image/jpeg", "image/gif", "image/webp"}) {
    const Json image = Uploaded(alice_, Bytes(10), type, "?filename=a.img");
    d = Download(alice_, image["id"]);
    EXPECT_EQ(d.headers["content-disposition"].rfind("inline", 0), 0u) << type;
    EXPECT_EQ(d.headers["content-type"], type);
  }
  const Json svg = Uploaded(alice_, "<svg/>", "image/svg+xml");
  EXPECT_EQ(Download(alice_, svg["id"]).headers["content-disposition"], "attachment");
  // A type's parameters are kept as sent.
  const Json text = Uploaded(alice_, "hello", "text/plain; charset=utf-8");
  EXPECT_EQ(Download(alice_, text["id"]).headers["content-type"], "text/plain; charset=utf-8");
}

TEST_F(AttachmentsTest, SingleByteRangesAreServedAcrossChunks) {
  const std::string bytes = Bytes(2 * kChunk + 500);
  const std::string id = Uploaded(alice_, bytes)["id"];
  const std::string size = std::to_string(bytes.size());
  struct Case {
    std::string range;
    int64_t first, last;
  };
  const int64_t n = static_cast<int64_t>(bytes.size());
  for (const Case& c :
       std::vector<Case>{{"bytes=0-0", 0, 0},
                         {"bytes=10-20", 10, 20},
                         {"bytes=262140-262150", kChunk - 4, kChunk + 6},
                         {"bytes=100-", 100, n - 1},
                         {"bytes=-5", n - 5, n - 1},
                         {"bytes=-999999999", 0, n - 1},
                         {"bytes=5-999999999", 5, n - 1},
                         {"bytes=" + std::to_string(2 * kChunk) + "-", 2 * kChunk, n - 1}}) {
    SCOPED_TRACE(c.range);
    auto d = Download(alice_, id, {{"Range", c.range}});
    ASSERT_EQ(d.status, 206) << d.body;
    EXPECT_EQ(d.headers["content-range"],
              "bytes " + std::to_string(c.first) + "-" + std::to_string(c.last) + "/" + size);
    EXPECT_EQ(d.headers["content-length"], std::to_string(c.last - c.first + 1));
    EXPECT_TRUE(d.body == bytes.substr(c.first, c.last - c.first + 1)) << "wrong bytes";
    EXPECT_EQ(d.headers["etag"], "\"" + id + "\"");
  }
  // Past the end: 416 with the size, and the error object.
  for (const std::string& range :
       std::vector<std::string>{"bytes=" + size + "-", "bytes=999999999-", "bytes=-0"}) {
    SCOPED_TRACE(range);
    auto d = Download(alice_, id, {{"Range", range}});
    ExpectError(d, 416, "invalid_request");
    EXPECT_EQ(d.headers["content-range"], "bytes */" + size);
  }
  // Several ranges, another unit, or bad syntax: the whole upload.
  for (const std::string& range :
       std::vector<std::string>{"bytes=0-1,5-6", "items=0-1", "bytes=abc", "bytes=9-3"}) {
    SCOPED_TRACE(range);
    auto d = Download(alice_, id, {{"Range", range}});
    EXPECT_EQ(d.status, 200);
    EXPECT_EQ(d.body.size(), bytes.size());
  }
  // An empty upload has no byte to serve.
  const std::string empty = Uploaded(alice_, "")["id"];
  ExpectError(Download(alice_, empty, {{"Range", "bytes=0-"}}), 416, "invalid_request");
}

TEST_F(AttachmentsTest, IfNoneMatchWithTheETagIsAnswered304WithoutBody) {
  const std::string id = Uploaded(alice_, Bytes(5000))["id"];
  const std::string etag = "\"" + id + "\"";
  for (const std::string& header :
       std::vector<std::string>{etag, "W/" + etag, "\"other\", " + etag, "*"}) {
    SCOPED_TRACE(header);
    auto d = Download(alice_, id, {{"If-None-Match", header}});
    EXPECT_EQ(d.status, 304);
    EXPECT_TRUE(d.body.empty());
    EXPECT_EQ(d.headers["etag"], etag);
    EXPECT_FALSE(d.headers.contains("content-length"));
  }
  // Before Range, as RFC 9110 orders them.
  EXPECT_EQ(Download(alice_, id, {{"If-None-Match", etag}, {"Range", "bytes=0-9"}}).status, 304);
  auto d = Download(alice_, id, {{"If-None-Match", "\"someone-else\""}});
  EXPECT_EQ(d.status, 200);
  EXPECT_EQ(d.body.size(), 5000u);
}

TEST_F(AttachmentsTest, DownloadsTakeTheTokenFromTheHeaderOrTheQuery) {
  const std::string bytes = Bytes(3000);
  const std::string id = Uploaded(alice_, bytes)["id"];
  auto d = client_.Get("/api/uploads/" + id + "?token=" + alice_.token);
  EXPECT_EQ(d.status, 200);
  EXPECT_TRUE(d.body == bytes);
  ExpectError(client_.Get("/api/uploads/" + id), 401, "unauthorized");
  ExpectError(client_.Get("/api/uploads/" + id + "?token=nonsense"), 401, "unauthorized");
  ExpectError(client_.Get("/api/uploads/" + id, "nonsense"), 401, "unauthorized");
  // As for the WebSocket, a token in the query wins over the header, even an empty one.
  EXPECT_EQ(client_.Get("/api/uploads/" + id + "?token=" + alice_.token, "nonsense").status, 200);
  ExpectError(client_.Get("/api/uploads/" + id + "?token=", alice_.token), 401, "unauthorized");
  // Uploads need the header.
  ExpectError(client_.Request("POST", "/api/uploads?token=" + alice_.token, "x", "",
                              {{"Content-Type", "text/plain"}}),
              401, "unauthorized");
}

TEST_F(AttachmentsTest, OnlyTheUploaderAndTheConversationMayDownload) {
  const std::string id = Uploaded(alice_, Bytes(100))["id"];
  // Not attached: the uploader's alone.
  EXPECT_EQ(Download(alice_, id).status, 200);
  ExpectError(Download(bob_, id), 404, "not_found");
  ExpectError(Download(alice_, "NoSuchUploadAtAllxxxxxxxxx"), 404, "not_found");
  ExpectError(Download(alice_, "bad%00id"), 404, "not_found");

  auto sent = Send(alice_, Json::array({id}), "the plan");
  ASSERT_EQ(sent.status, 201) << sent.body;
  EXPECT_EQ(Download(bob_, id).status, 200);
  EXPECT_EQ(Download(carol_, id).status, 200);
  Account dave = SignUp(server_, client_, "dave");
  ExpectError(Download(dave, id), 404, "not_found");

  // A removed member no longer may; the others still do.
  ASSERT_EQ(client_
                .Request("DELETE",
                         "/api/conversations/" + std::to_string(group_) + "/participants/" +
                             std::to_string(carol_.id),
                         "", alice_.token)
                .status,
            204);
  ExpectError(Download(carol_, id), 404, "not_found");
  EXPECT_EQ(Download(bob_, id).status, 200);

  // Deleting the message removes its attachments, for everyone, the uploader too.
  const int64_t message = sent.json["id"];
  ASSERT_EQ(client_.Request("DELETE", "/api/messages/" + std::to_string(message), "", alice_.token)
                .status,
            204);
  ExpectError(Download(alice_, id), 404, "not_found");
  ExpectError(Download(bob_, id), 404, "not_found");
  auto got = client_.Get("/api/conversations/" + std::to_string(group_) + "/messages", bob_.token);
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.json["messages"].back()["attachments"], Json::array());
}

TEST_F(AttachmentsTest, AMessageCarriesItsAttachmentsEverywhereItIsShown) {
  const Json a = Uploaded(alice_, Bytes(10), "image/png", "?filename=a.png");
  const Json b = Uploaded(alice_, Bytes(20), "application/zip");
  WsClient ws(server_.ws_port(), bob_.token);
  ASSERT_TRUE(ws.connected());
  // No text: allowed with attachments, and then `content` may be left out.
  auto sent = client_.Post("/api/messages",
                           {{"conversation_id", group_}, {"attachments", {a["id"], b["id"]}}},
                           alice_.token);
  ASSERT_EQ(sent.status, 201) << sent.body;
  EXPECT_EQ(sent.json["content"], "");
  const Json expected = Json::array({a, b});
  EXPECT_EQ(sent.json["attachments"], expected);
  const Json pushed = ws.NextOfType("message");
  EXPECT_EQ(pushed["data"]["attachments"], expected);
  auto list = client_.Get("/api/conversations/" + std::to_string(group_) + "/messages", bob_.token);
  EXPECT_EQ(list.json["messages"].back()["attachments"], expected);
  auto sync = client_.Get("/api/sync?since=0", bob_.token);
  EXPECT_EQ(sync.json["messages"].back()["attachments"], expected);

  // Over the WebSocket too; an edit keeps them.
  const Json c = Uploaded(bob_, "c", "text/plain");
  ws.Send({{"type", "message"},
           {"ref", "r1"},
           {"conversation_id", group_},
           {"content", "see c"},
           {"attachments", {c["id"]}}});
  const Json ack = ws.NextOfType("ack");
  ASSERT_TRUE(ack["data"]["ok"].get<bool>()) << ack.dump();
  EXPECT_EQ(ack["data"]["result"]["attachments"], Json::array({c}));
  const int64_t id = ack["data"]["result"]["id"];
  auto edited = client_.Request("PATCH", "/api/messages/" + std::to_string(id),
                                R"({"content":"see c!"})", bob_.token);
  ASSERT_EQ(edited.status, 200) << edited.body;
  EXPECT_EQ(edited.json["attachments"], Json::array({c}));
  // As when sending, a message with attachments may be edited to say nothing; one without
  // may not.
  edited = client_.Request("PATCH", "/api/messages/" + std::to_string(id), R"({"content":""})",
                           bob_.token);
  ASSERT_EQ(edited.status, 200) << edited.body;
  EXPECT_EQ(edited.json["content"], "");
  EXPECT_EQ(edited.json["attachments"], Json::array({c}));
  auto text = client_.Post("/api/messages", {{"conversation_id", group_}, {"content", "words"}},
                           bob_.token);
  ASSERT_EQ(text.status, 201);
  ExpectError(
      client_.Request("PATCH", "/api/messages/" + std::to_string(text.json["id"].get<int64_t>()),
                      R"({"content":""})", bob_.token),
      400, "invalid_request");
}

TEST_F(AttachmentsTest, OnlyFreeUploadsOfTheSendersOwnAreAttached) {
  const std::string mine = Uploaded(alice_, "mine")["id"];
  const std::string bobs = Uploaded(bob_, "bob's")["id"];
  ExpectError(Send(alice_, Json::array({bobs})), 400, "invalid_request");  // someone else's
  ExpectError(Send(alice_, Json::array({"NoSuchUploadxxxxxxxxxxxxxx"})), 400, "invalid_request");
  ExpectError(Send(alice_, Json::array({mine, mine})), 400, "invalid_request");  // twice
  ExpectError(Send(alice_, Json::array({"a/b"})), 400, "invalid_request");
  ExpectError(Send(alice_, Json::array({std::string(100, 'x')})), 400, "invalid_request");
  ExpectError(Send(alice_, Json::array({7})), 400, "invalid_request");
  ExpectError(Send(alice_, "nope"), 400, "invalid_request");
  // A refused message attached nothing: the upload is still free.
  ExpectError(Send(alice_, Json::array({mine, bobs})), 400, "invalid_request");
  ASSERT_EQ(Send(alice_, Json::array({mine})).status, 201);
  // Attached once, never again.
  ExpectError(Send(alice_, Json::array({mine})), 400, "invalid_request");
  // Without attachments a message needs text.
  ExpectError(Send(alice_, Json::array()), 400, "invalid_request");
  ExpectError(
      client_.Post("/api/messages", {{"conversation_id", group_}, {"attachments", Json::array()}},
                   alice_.token),
      400, "invalid_request");

  // Ten at most.
  Json ten = Json::array(), eleven;
  for (int i = 0; i < 10; ++i) ten.push_back(Uploaded(alice_, "x")["id"]);
  eleven = ten;
  eleven.push_back(Uploaded(alice_, "y")["id"]);
  ExpectError(Send(alice_, eleven), 400, "invalid_request");
  auto r = Send(alice_, ten, "ten");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.json["attachments"].size(), 10u);
}

TEST_F(AttachmentsTest, BadUploadsAreRefusedWithTheErrorObject) {
  ExpectError(Upload(alice_, "x", ""), 400, "invalid_request");  // no Content-Type
  for (const std::string& type :
       std::vector<std::string>{"nope", "text/", "/plain", "text/pl ain", "text/plain\x01",
                                "te(xt/plain", std::string(300, 'a') + "/b"}) {
    SCOPED_TRACE(type);
    ExpectError(Upload(alice_, "x", type), 400, "invalid_request");
  }
  for (const std::string& name : std::vector<std::string>{
           "a%2Fb", "a%5Cb", "a%00b", "a%0Ab", "a%7Fb", "", std::string(256, 'n'), "%FF%FE"}) {
    SCOPED_TRACE(name);
    ExpectError(Upload(alice_, "x", "text/plain", "?filename=" + name), 400, "invalid_request");
  }
  EXPECT_EQ(Upload(alice_, "x", "text/plain", "?filename=" + std::string(255, 'n')).status, 201);
  EXPECT_EQ(Upload(alice_, "x", "text/plain", "?filename=%E2%9C%93%20ok.txt").status, 201);
}

// An upload whose client goes away halfway leaves nothing behind.
TEST_F(AttachmentsTest, AnAbandonedUploadLeavesNothing) {
  const std::string before = QueryStoreOne(server_.dir(), "SELECT count(*) FROM uploads");
  namespace net = boost::asio;
  net::io_context io;
  net::ip::tcp::socket socket(io);
  socket.connect({net::ip::make_address("127.0.0.1"), server_.port()});
  const std::string head = "POST /api/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                           alice_.token +
                           "\r\nContent-Type: text/plain\r\nContent-Length: 2000000\r\n\r\n";
  net::write(socket, net::buffer(head));
  net::write(socket, net::buffer(Bytes(kChunk * 3)));  // three chunks stored, then gone
  EXPECT_TRUE(Eventually(
      [&] { return QueryStoreOne(server_.dir(), "SELECT count(*) FROM upload_chunks") != "0"; }));
  socket.close();
  EXPECT_TRUE(Eventually([&] {
    return QueryStoreOne(server_.dir(), "SELECT count(*) FROM uploads") == before &&
           QueryStoreOne(server_.dir(), "SELECT count(*) FROM upload_chunks") == "0";
  }));
  // The server goes on serving.
  EXPECT_EQ(Upload(alice_, "after").status, 201);
}

// Downloads whose clients go away at any point, while the next chunk is being read from the
// store (the server reads ahead of the socket), leave the server serving every one after them.
TEST_F(AttachmentsTest, DownloadsCutShortLeaveTheServerServing) {
  const std::string bytes = Bytes(6 * kChunk + 7, 9);
  const std::string id = Uploaded(alice_, bytes)["id"];
  namespace net = boost::asio;
  net::io_context io;
  for (size_t read : {size_t{0}, size_t{1}, size_t{1000}, size_t(kChunk), size_t(3 * kChunk)}) {
    SCOPED_TRACE(read);
    net::ip::tcp::socket socket(io);
    socket.connect({net::ip::make_address("127.0.0.1"), server_.port()});
    const std::string head = "GET /api/uploads/" + id +
                             " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + alice_.token +
                             "\r\n\r\n";
    net::write(socket, net::buffer(head));
    std::string got(read, '\0');
    if (read > 0) net::read(socket, net::buffer(got));
    socket.close();
  }
  // The whole file still comes back exactly, twice on one connection.
  for (int i = 0; i < 2; ++i) {
    auto d = Download(alice_, id);
    ASSERT_EQ(d.status, 200);
    EXPECT_TRUE(d.body == bytes) << "the downloaded bytes differ";
  }
  EXPECT_EQ(client_.Get("/healthz").status, 200);
}

class SmallUploadsTest : public AttachmentsTest {
 protected:
  SmallUploadsTest() : AttachmentsTest({{"MAX_UPLOAD_BYTES", "300000"}}) {}
};

TEST_F(SmallUploadsTest, AnUploadOverMaxUploadBytesIs413) {
  EXPECT_EQ(Upload(alice_, Bytes(300000)).status, 201);
  ExpectError(Upload(alice_, Bytes(300001)), 413, "payload_too_large");
  // Without a Content-Length the body is counted as it comes.
  ExpectError(UploadChunked(server_.port(), alice_.token, Bytes(400000)), 413, "payload_too_large");
  auto fits = UploadChunked(server_.port(), alice_.token, Bytes(1000));
  EXPECT_EQ(fits.status, 201) << fits.body;
  EXPECT_EQ(fits.json["size"], 1000);
  // Nothing of the refused ones was kept.
  EXPECT_TRUE(Eventually(
      [&] { return QueryStoreOne(server_.dir(), "SELECT count(*) FROM uploads") == "2"; }));
  // Other bodies keep their 64 KiB limit.
  ExpectError(client_.Request("POST", "/api/messages", std::string(70000, ' '), alice_.token), 413,
              "payload_too_large");
}

class PendingUploadsTest : public AttachmentsTest {
 protected:
  PendingUploadsTest()
      : AttachmentsTest({{"MAX_UPLOAD_BYTES", "700000"}, {"MAX_PENDING_UPLOAD_BYTES", "1000000"}}) {
  }
};

TEST_F(PendingUploadsTest, WhatNoMessageCarriesIsBoundedPerUser) {
  const Json first = Uploaded(alice_, Bytes(600000));
  // 600,000 more would take alice past 1,000,000: refused at the start (Content-Length), before
  // the 100 that asks for the body...
  ExpectError(Upload(alice_, Bytes(600000, 2)), 413, "payload_too_large");
  ExpectError(UploadHeadersOnly(server_.port(), alice_.token, 600000), 413, "payload_too_large");
  EXPECT_EQ(UploadHeadersOnly(server_.port(), alice_.token, 300000).status, 100);
  // ...and without a Content-Length as its bytes arrive, a chunk (256 KiB) at a time.
  ExpectError(UploadChunked(server_.port(), alice_.token, Bytes(600000, 3)), 413,
              "payload_too_large");
  // Its first chunk was stored, and stops counting once the refused upload is removed (just
  // after the answer).
  ASSERT_TRUE(Eventually(
      [&] { return QueryStoreOne(server_.dir(), "SELECT count(*) FROM uploads") == "1"; }));
  // What fits still goes in, and another user has room of its own.
  EXPECT_EQ(Upload(alice_, Bytes(300000, 4)).status, 201);
  EXPECT_EQ(Upload(bob_, Bytes(600000, 5)).status, 201);
  // Sent in a message, an upload no longer counts.
  ASSERT_EQ(Send(alice_, Json::array({first["id"]})).status, 201);
  EXPECT_EQ(Upload(alice_, Bytes(600000, 6)).status, 201);
  // Nothing of the refused ones was kept.
  EXPECT_TRUE(Eventually(
      [&] { return QueryStoreOne(server_.dir(), "SELECT count(*) FROM uploads") == "4"; }));
}

class SweptUploadsTest : public AttachmentsTest {
 protected:
  SweptUploadsTest() : AttachmentsTest({{"UPLOAD_SWEEP_SEC", "1"}}) {}
};

TEST_F(SweptUploadsTest, OrphansAfterADayAndDeletedMessagesUploadsAreRemoved) {
  // A marker that is nowhere else: after the sweep it must not be in the store at all.
  const std::string marker = "MARKER-" + std::string(200, 'q') + "-OF-A-DELETED-ATTACHMENT";
  const std::string kept_marker = "MARKER-" + std::string(200, 'k') + "-OF-A-KEPT-ATTACHMENT";
  const std::string deleted = Uploaded(alice_, marker + Bytes(kChunk))["id"];
  const std::string kept = Uploaded(alice_, kept_marker)["id"];
  const std::string orphan = Uploaded(alice_, "an orphan")["id"];
  const std::string young = Uploaded(alice_, "a young orphan")["id"];
  auto m = Send(alice_, Json::array({deleted}), "doomed");
  ASSERT_EQ(m.status, 201);
  ASSERT_EQ(Send(alice_, Json::array({kept}), "kept").status, 201);
  // An orphan of more than a day: its creation moved back.
  QueryStore(server_.dir(),
             "UPDATE uploads SET created_at = created_at - 86400001 WHERE id = '" + orphan + "'");
  ASSERT_EQ(client_
                .Request("DELETE", "/api/messages/" + std::to_string(m.json["id"].get<int64_t>()),
                         "", alice_.token)
                .status,
            204);
  auto rows = [&](const std::string& id) {
    return QueryStoreOne(server_.dir(), "SELECT count(*) FROM uploads WHERE id = '" + id + "'") +
           "/" +
           QueryStoreOne(server_.dir(),
                         "SELECT count(*) FROM upload_chunks WHERE upload_id = '" + id + "'");
  };
  EXPECT_TRUE(Eventually([&] { return rows(deleted) == "0/0" && rows(orphan) == "0/0"; }))
      << rows(deleted) << " " << rows(orphan);
  EXPECT_EQ(rows(kept), "1/1");
  EXPECT_EQ(rows(young), "1/1");
  EXPECT_EQ(Download(alice_, young).status, 200);
  ExpectError(Download(alice_, orphan), 404, "not_found");
  EXPECT_EQ(Download(bob_, kept).body, kept_marker);

  ASSERT_EQ(server_.Stop(), 0);
  const std::string contents = StoreContents(server_.dir());
  auto stored = [&](const std::string& text) {
    if (!OnPostgres()) return contents.find(text) != std::string::npos;
    // PostgreSQL's text of a bytea is its hex.
    std::string hex = "\\x";
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned char c : text) {
      hex += kHex[c >> 4];
      hex += kHex[c & 15];
    }
    return contents.find(hex.substr(2)) != std::string::npos;
  };
  ASSERT_TRUE(stored(kept_marker)) << "the check reads the bytes of uploads";
  EXPECT_FALSE(stored(marker)) << "a deleted message's attachment is still stored";
}

// Every node serves every upload: the bytes are in the database (under SplitNodes() the
// download goes to the other node).
TEST_F(AttachmentsTest, AnotherNodeServesTheUpload) {
  const std::string bytes = Bytes(kChunk + 77);
  const std::string id = Uploaded(alice_, bytes)["id"];
  HttpClient other(server_.ws_port());
  auto d = other.Get("/api/uploads/" + id, alice_.token);
  ASSERT_EQ(d.status, 200);
  EXPECT_TRUE(d.body == bytes);
}

// An upload answered 201 survives the server's death: uploads stream in on four connections
// (each file of several chunks) until SIGKILL, and after a restart on the same database every
// acknowledged one downloads with its exact bytes, and the database is sound.
TEST(UploadCrashTest, EveryAcknowledgedUploadSurvivesSigkill) {
  TestServer server(ServerOptions{.env = kNoAbuseLimits});
  HttpClient client(server.port());
  const Account alice = SignUp(server, client, "alice");
  std::mutex mu;
  std::vector<std::pair<std::string, unsigned>> acked;  // id, seed of its bytes
  std::atomic<bool> stop{false};
  std::vector<std::thread> uploaders;
  for (unsigned t = 0; t < 4; ++t) {
    uploaders.emplace_back([&, t] {
      HttpClient mine(server.port());
      for (unsigned n = 0; !stop; ++n) {
        const unsigned seed = t * 100000 + n;
        try {
          auto r = mine.Request("POST", "/api/uploads", Bytes(kChunk * 2 + 1000 + t, seed),
                                alice.token, {{"Content-Type", "application/octet-stream"}});
          if (r.status != 201) break;
          std::lock_guard lock(mu);
          acked.emplace_back(r.json["id"].get<std::string>(), seed);
        } catch (const std::exception&) {
          break;  // the server died mid-request: not acknowledged
        }
      }
    });
  }
  // Until a few have been acknowledged, then a little more: the kill lands mid-upload.
  ASSERT_TRUE(Eventually(
      [&] {
        std::lock_guard lock(mu);
        return acked.size() >= 8;
      },
      std::chrono::seconds(60)));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_EQ(server.Stop(SIGKILL), 128 + SIGKILL);
  stop = true;
  for (auto& t : uploaders) t.join();

  TestServer restarted(ServerOptions{.env = kNoAbuseLimits, .dir = server.dir()});
  HttpClient after(restarted.port());
  for (const auto& [id, seed] : acked) {
    auto d = after.Get("/api/uploads/" + id, alice.token);
    ASSERT_EQ(d.status, 200) << id;
    const unsigned t = seed / 100000;
    EXPECT_TRUE(d.body == Bytes(kChunk * 2 + 1000 + t, seed)) << "the bytes of " << id << " differ";
  }
  std::printf("uploads acknowledged before SIGKILL: %zu, all there after the restart\n",
              acked.size());
  ASSERT_EQ(restarted.Stop(), 0);
  EXPECT_EQ(StoreIntegrityCheck(restarted.dir()), "ok");
}

}  // namespace
}  // namespace mmchat::test
