// The harness's own checks: a test must not pass because its tools looked away. The teardown of
// TestServer: a crash, an error line, a sanitizer report.
#include "harness.h"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <string>
#include <thread>

namespace mmchat::test {
namespace {

// Appends `line` to the server's log, as if the server had written it.
void AppendToLog(const TestServer& server, const std::string& line) {
  std::ofstream(server.dir() / "server.log", std::ios::app) << line << "\n";
}

TEST(HarnessTeardownTest, ACrashTheTestDidNotSeeFails) {
  EXPECT_NONFATAL_FAILURE(
      {
        TestServer server;
        const pid_t pid = server.pid();
        kill(pid, SIGSEGV);
        // Not reaped here: the teardown finds it gone.
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      },
      "exited by itself during the test, with 139");
}

TEST(HarnessTeardownTest, AnErrorLineFailsUnlessExpected) {
  EXPECT_NONFATAL_FAILURE(
      {
        TestServer server;
        AppendToLog(server, "2026-11-23T10:00:00.123Z error sqlite: disk I/O error");
      },
      "sqlite: disk I/O error");
  TestServer expected({.expected_errors = {"sqlite: disk I/O error"}});
  AppendToLog(expected, "2026-11-23T10:00:00.123Z error sqlite: disk I/O error");
}

TEST(HarnessTeardownTest, ASanitizerReportFailsEvenWhenTheTestStoppedTheServer) {
  EXPECT_NONFATAL_FAILURE(
      {
        TestServer server;
        EXPECT_EQ(server.Stop(SIGKILL), 128 + SIGKILL);
        AppendToLog(server, "==42==ERROR: AddressSanitizer: heap-use-after-free on address 0x1");
      },
      "heap-use-after-free");
}

TEST(HarnessTeardownTest, AServerTheTestStoppedIsNotCheckedAgain) {
  TestServer server;
  EXPECT_EQ(server.Stop(SIGKILL), 128 + SIGKILL);
  AppendToLog(server, "2026-11-23T10:00:00.123Z error provoked by the test");
}

}  // namespace
}  // namespace mmchat::test
