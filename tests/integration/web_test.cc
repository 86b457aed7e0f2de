// The web client's files, served by the binary itself (issue 15): `/` and `/web/<file>` with
// the headers that keep anything but the client's own files from running on its pages.
// (What the client does is tested in a real browser.)
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "harness.h"

namespace mmchat::test {
namespace {

// The security headers every page and file of the client carries.
void ExpectLockedDown(HttpResult& r) {
  const std::string csp = r.headers["content-security-policy"];
  EXPECT_NE(csp.find("default-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("object-src 'none'"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe-eval"), std::string::npos) << csp;
  EXPECT_EQ(r.headers["x-content-type-options"], "nosniff");
  EXPECT_EQ(r.headers["referrer-policy"], "no-referrer");
  EXPECT_FALSE(r.headers["etag"].empty());
}

TEST(WebClientTest, ThePageAndItsFilesAreServedLockedDown) {
  TestServer server;
  HttpClient client(server.port());
  auto page = client.Get("/");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.headers["content-type"], "text/html; charset=utf-8");
  ExpectLockedDown(page);
  EXPECT_EQ(client.Get("/web/index.html").body, page.body);

  // Every script the page loads is a file of its own (the policy forbids inline ones), and
  // every file it names is served with its type.
  const std::regex script(R"(<script\b([^>]*)>)");
  int scripts = 0;
  for (auto it = std::sregex_iterator(page.body.begin(), page.body.end(), script);
       it != std::sregex_iterator(); ++it) {
    ++scripts;
    EXPECT_NE((*it)[1].str().find("src=\"/web/"), std::string::npos) << it->str();
  }
  EXPECT_GE(scripts, 1);
  const std::regex linked(R"((?:src|href)="(/web/[^"]+)\")");
  int files = 0;
  for (auto it = std::sregex_iterator(page.body.begin(), page.body.end(), linked);
       it != std::sregex_iterator(); ++it) {
    ++files;
    const std::string path = (*it)[1];
    SCOPED_TRACE(path);
    auto file = client.Get(path);
    ASSERT_EQ(file.status, 200);
    EXPECT_FALSE(file.body.empty());
    const std::string type = file.headers["content-type"];
    if (path.ends_with(".js")) {
      EXPECT_EQ(type, "text/javascript; charset=utf-8");
    } else if (path.ends_with(".css")) {
      EXPECT_EQ(type, "text/css; charset=utf-8");
    }
    ExpectLockedDown(file);
  }
  EXPECT_GE(files, 2);
}

TEST(WebClientTest, FilesAreRevalidatedByETagAndUnknownOnesAre404) {
  TestServer server;
  HttpClient client(server.port());
  auto first = client.Get("/web/app.js");
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(first.headers["cache-control"], "no-cache");
  const std::string etag = first.headers["etag"];
  auto again = client.Request("GET", "/web/app.js", "", "", {{"If-None-Match", etag}});
  EXPECT_EQ(again.status, 304);
  EXPECT_TRUE(again.body.empty());
  auto other = client.Request("GET", "/web/style.css", "", "", {{"If-None-Match", etag}});
  EXPECT_EQ(other.status, 200);  // another file's tag
  for (const char* missing : {"/web/nope.js", "/web/", "/web/../CMakeLists.txt", "/index.html"}) {
    auto r = client.Get(missing);
    EXPECT_EQ(r.status, 404) << missing;
    EXPECT_EQ(r.ErrorCode(), "not_found") << missing;
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(WebClientTest, TheClientLibraryAndTheApiDocumentsAreServed) {
  TestServer server;
  HttpClient client(server.port());
  // The library the page imports (app.js loads it as a module, the page does not name it).
  auto library = client.Get("/web/mmchat.js");
  ASSERT_EQ(library.status, 200);
  EXPECT_EQ(library.headers["content-type"], "text/javascript; charset=utf-8");
  EXPECT_NE(client.Get("/web/app.js").body.find("from './mmchat.js'"), std::string::npos);
  // The documents, byte for byte as in docs/: what a tool reads from a running server is what
  // the tests check against its answers.
  for (const std::string name : {"openapi.yaml", "asyncapi.yaml"}) {
    SCOPED_TRACE(name);
    auto doc = client.Get("/api/" + name);
    ASSERT_EQ(doc.status, 200);
    EXPECT_EQ(doc.headers["content-type"], "application/yaml; charset=utf-8");
    EXPECT_EQ(doc.body, ReadFile(std::string(MMCHAT_DOCS_DIR) + "/" + name));
    EXPECT_EQ(client.Get("/web/" + name).status, 404);
  }
}

}  // namespace
}  // namespace mmchat::test
