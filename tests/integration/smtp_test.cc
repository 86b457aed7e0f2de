// API.md "Authentication" with OTP_SENDER=smtp: the codes travel by real SMTP to a test sink
// (smtp_sink.py on aiosmtpd), and a failing mail server leaves nothing half-made.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <memory>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "harness.h"

namespace mmchat::test {
namespace {

constexpr const char* kFrom = "noreply@mmchat.test";
constexpr auto kMailTimeout = std::chrono::seconds(15);

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// One message as the sink stored it: envelope, headers (lower-case names, unfolded), body.
struct Mail {
  std::string file;
  std::string envelope_from;
  std::string envelope_to;
  std::map<std::string, std::string> headers;
  std::string body;

  std::string Header(const std::string& name) const {
    auto it = headers.find(Lower(name));
    return it == headers.end() ? "" : it->second;
  }
};

Mail ParseMail(const std::string& file, const std::string& raw) {
  Mail m;
  m.file = file;
  size_t sep = raw.find("\r\n\r\n");
  size_t body_start = sep == std::string::npos ? std::string::npos : sep + 4;
  if (sep == std::string::npos) {
    sep = raw.find("\n\n");
    body_start = sep == std::string::npos ? std::string::npos : sep + 2;
  }
  const std::string head = raw.substr(0, sep);
  m.body = body_start == std::string::npos ? "" : raw.substr(body_start);
  std::vector<std::string> lines;
  std::istringstream in(head);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t') && !lines.empty()) {
      lines.back() += " " + line.substr(line.find_first_not_of(" \t"));  // folded header
    } else {
      lines.push_back(line);
    }
  }
  for (const auto& line : lines) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    value.erase(0, std::min(value.find_first_not_of(" \t"), value.size()));
    const std::string name = Lower(line.substr(0, colon));
    if (name == "x-sink-mail-from") {
      m.envelope_from = value;
    } else if (name == "x-sink-rcpt-to") {
      m.envelope_to = value;
    } else {
      m.headers[name] = value;
    }
  }
  return m;
}

// Every run of ASCII digits in `s`.
std::vector<std::string> DigitRuns(const std::string& s) {
  std::vector<std::string> runs;
  static const std::regex kDigits("[0-9]+");
  for (auto it = std::sregex_iterator(s.begin(), s.end(), kDigits); it != std::sregex_iterator();
       ++it) {
    runs.push_back(it->str());
  }
  return runs;
}

class SmtpSink {
 public:
  // Starts smtp_sink.py on a free port; retries with another port if that one got taken.
  SmtpSink() : dir_(MakeTempDir() / "mail") {
    std::filesystem::create_directories(dir_);
    std::string last_error;
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = FreePort();
      if (Start(&last_error)) return;
    }
    throw std::runtime_error("smtp_sink.py did not start: " + last_error);
  }

  ~SmtpSink() {
    Stop();
    if (out_fd_ >= 0) close(out_fd_);
    if (!::testing::Test::HasFailure()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_.parent_path(), ec);
    } else {
      std::fprintf(stderr, "kept mail directory %s\n", dir_.c_str());
    }
  }

  // Stops the sink: from then on nothing listens on port().
  void Stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      // Bounded wait for the exit, then make sure.
      for (int i = 0; i < 500; ++i) {
        if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
          pid_ = -1;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (pid_ > 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
      }
    }
  }

  uint16_t port() const { return port_; }

  // Every stored message, in arrival order.
  std::vector<Mail> Mails() const {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      const std::string name = e.path().filename().string();
      if (name.size() > 4 && name[0] != '.' && name.ends_with(".eml")) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    std::vector<Mail> out;
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      out.push_back(ParseMail(f.filename().string(), raw));
    }
    return out;
  }

  std::vector<Mail> MailsTo(const std::string& address) const {
    std::vector<Mail> out;
    for (auto& m : Mails()) {
      if (Lower(m.envelope_to) == Lower(address)) out.push_back(std::move(m));
    }
    return out;
  }

  // Waits until `address` has at least `n` messages; returns them (fewer after the timeout).
  std::vector<Mail> WaitForMails(const std::string& address, size_t n) const {
    const auto deadline = std::chrono::steady_clock::now() + kMailTimeout;
    for (;;) {
      auto mails = MailsTo(address);
      if (mails.size() >= n || std::chrono::steady_clock::now() >= deadline) return mails;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

 private:
  bool Start(std::string* error) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    const std::string port = std::to_string(port_);
    const pid_t pid = fork();
    if (pid == 0) {
      dup2(fds[1], 1);
      close(fds[0]);
      close(fds[1]);
      // Debian's python, which has aiosmtpd; not whatever python3 PATH finds first.
      execl("/usr/bin/python3", "python3", SMTP_SINK, port.c_str(), dir_.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    if (pid < 0) {
      close(fds[0]);
      throw std::runtime_error("fork failed");
    }
    // Read stdout until "ready", with a bounded wait.
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (out.find("ready\n") == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{fds[0], POLLIN, 0};
      char buf[256];
      ssize_t n = 0;
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0 ||
          (n = read(fds[0], buf, sizeof buf)) <= 0) {
        *error = "no \"ready\" line (stdout so far: \"" + out + "\")";
        close(fds[0]);
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        return false;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    pid_ = pid;
    out_fd_ = fds[0];  // kept open so that later prints never hit a closed pipe
    return true;
  }

  std::filesystem::path dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  int out_fd_ = -1;
};

class SmtpTest : public ::testing::Test {
 protected:
  // `expected_errors`: the log lines of the failed deliveries a test provokes.
  void StartServer(std::map<std::string, std::string> env = {},
                   std::vector<std::string> expected_errors = {}) {
    env.emplace("OTP_SENDER", "smtp");
    env.emplace("SMTP_URL", "smtp://127.0.0.1:" + std::to_string(sink_.port()));
    env.emplace("SMTP_FROM", kFrom);
    ServerOptions options;
    options.env = std::move(env);
    options.expected_errors = std::move(expected_errors);
    server_ = std::make_unique<TestServer>(options);
    client_ = std::make_unique<HttpClient>(server_->port());
  }

  HttpResult Initiate(const std::string& username, const std::string& email,
                      const std::string& password = "correct horse") {
    return client_->Post("/api/signup/initiate",
                         {{"username", username}, {"email", email}, {"password", password}});
  }
  HttpResult Verify(const std::string& email, const std::string& otp) {
    return client_->Post("/api/signup/verify", {{"email", email}, {"otp", otp}});
  }
  HttpResult Login(const std::string& username, const std::string& password) {
    return client_->Post("/api/login", {{"username", username}, {"password", password}});
  }

  // Checks the mail's form and returns the code it carries ("" when it has none).
  std::string CodeOf(const Mail& mail, const std::string& to, size_t digits) {
    EXPECT_EQ(Lower(mail.envelope_from), kFrom) << mail.file;
    EXPECT_FALSE(mail.Header("Subject").empty()) << mail.file;
    EXPECT_NE(mail.Header("From").find(kFrom), std::string::npos) << mail.Header("From");
    EXPECT_NE(Lower(mail.Header("To")).find(Lower(to)), std::string::npos) << mail.Header("To");
    const std::string type = Lower(mail.Header("Content-Type"));
    EXPECT_TRUE(type.empty() || type.rfind("text/plain", 0) == 0) << type;  // RFC 2045 default
    EXPECT_FALSE(mail.body.empty()) << mail.file;
    const auto runs = DigitRuns(mail.body);
    EXPECT_EQ(runs.size(), 1u) << "the code must be the only run of digits:\n" << mail.body;
    if (runs.size() != 1) return "";
    EXPECT_EQ(runs[0].size(), digits) << mail.body;
    return runs[0];
  }

  // signup/initiate, the mailed code, verify: the token.
  std::string SignUpByMail(const std::string& username, const std::string& email,
                           const std::string& password = "correct horse") {
    const auto init = Initiate(username, email, password);
    EXPECT_EQ(init.status, 202) << init.body;
    const auto mails = sink_.WaitForMails(email, 1);
    EXPECT_EQ(mails.size(), 1u);
    if (mails.empty()) return "";
    const std::string code = CodeOf(mails.back(), email, 6);
    const auto verify = Verify(email, code);
    EXPECT_EQ(verify.status, 201) << verify.body;
    return verify.json.value("token", "");
  }

  void ExpectUnavailable(const HttpResult& r) {
    EXPECT_GE(r.status, 500) << r.body;
    EXPECT_LT(r.status, 600) << r.body;
    EXPECT_EQ(r.status, 503) << r.body;
    EXPECT_EQ(r.ErrorCode(), "unavailable") << r.body;
    ASSERT_TRUE(r.json.is_object()) << r.body;
    EXPECT_TRUE(r.json["error"]["message"].is_string()) << r.body;
    EXPECT_FALSE(r.json["error"].value("message", "").empty()) << r.body;
  }

  // No account and no pending code were left for (username, email) after a failed send.
  void ExpectNothingLeft(const std::string& username, const std::string& email) {
    for (const char* otp : {"000000", "123456", "999999"}) {
      const auto v = Verify(email, otp);
      EXPECT_EQ(v.status, 400) << v.body;
      EXPECT_EQ(v.ErrorCode(), "otp_invalid") << v.body;
    }
    const auto login = Login(username, "correct horse");
    EXPECT_EQ(login.status, 401) << login.body;
    EXPECT_EQ(login.ErrorCode(), "invalid_credentials") << login.body;
  }

  SmtpSink sink_;
  std::unique_ptr<TestServer> server_;
  std::unique_ptr<HttpClient> client_;
};

TEST_F(SmtpTest, SignupCodeArrivesByMailAndVerifies) {
  StartServer();
  const auto init = Initiate("alice", "alice@example.com");
  ASSERT_EQ(init.status, 202) << init.body;
  EXPECT_TRUE(init.json["message"].is_string()) << init.body;
  EXPECT_EQ(init.json.value("expires_in_sec", 0), 300) << init.body;

  const auto mails = sink_.WaitForMails("alice@example.com", 1);
  ASSERT_EQ(mails.size(), 1u) << "no mail arrived for alice@example.com";
  ASSERT_EQ(sink_.Mails().size(), 1u);
  const std::string code = CodeOf(mails[0], "alice@example.com", 6);
  ASSERT_EQ(code.size(), 6u);

  const auto verify = Verify("alice@example.com", code);
  ASSERT_EQ(verify.status, 201) << verify.body;
  const std::string token = verify.json.value("token", "");
  EXPECT_FALSE(token.empty()) << verify.body;
  EXPECT_EQ(verify.json["user"].value("username", ""), "alice") << verify.body;

  const auto me = client_->Get("/api/me", token);
  ASSERT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(me.json.value("email", ""), "alice@example.com") << me.body;

  const auto login = Login("alice", "correct horse");
  ASSERT_EQ(login.status, 200) << login.body;
  EXPECT_FALSE(login.json.value("token", "").empty()) << login.body;
  const auto by_email =
      client_->Post("/api/login", {{"email", "ALICE@example.com"}, {"password", "correct horse"}});
  EXPECT_EQ(by_email.status, 200) << by_email.body;

  // The code is used once.
  const auto again = Verify("alice@example.com", code);
  EXPECT_EQ(again.status, 400) << again.body;
  EXPECT_EQ(again.ErrorCode(), "otp_invalid") << again.body;
}

TEST_F(SmtpTest, EightDigitCodes) {
  StartServer({{"OTP_DIGITS", "8"}});
  ASSERT_EQ(Initiate("eight", "eight@example.com").status, 202);
  const auto mails = sink_.WaitForMails("eight@example.com", 1);
  ASSERT_EQ(mails.size(), 1u);
  const std::string code = CodeOf(mails[0], "eight@example.com", 8);
  ASSERT_EQ(code.size(), 8u);
  // A six-digit prefix of the code is not the code.
  const auto short_code = Verify("eight@example.com", code.substr(0, 6));
  EXPECT_EQ(short_code.status, 400) << short_code.body;
  const auto verify = Verify("eight@example.com", code);
  ASSERT_EQ(verify.status, 201) << verify.body;
  EXPECT_EQ(Login("eight", "correct horse").status, 200);
}

TEST_F(SmtpTest, ForgotMailsOnlyRegisteredAddresses) {
  StartServer();
  const std::string old_token = SignUpByMail("bob", "bob@example.com");
  ASSERT_FALSE(old_token.empty());
  ASSERT_EQ(sink_.MailsTo("bob@example.com").size(), 1u);

  // The unknown address first, then the known one: once the known one's mail is in, the
  // unknown one had its chance.
  const auto unknown = client_->Post("/api/forgot/initiate", {{"email", "nobody@example.com"}});
  EXPECT_EQ(unknown.status, 202) << unknown.body;
  const auto known = client_->Post("/api/forgot/initiate", {{"email", "bob@example.com"}});
  EXPECT_EQ(known.status, 202) << known.body;
  EXPECT_EQ(unknown.body, known.body);  // the same answer either way

  const auto bob_mails = sink_.WaitForMails("bob@example.com", 2);
  ASSERT_EQ(bob_mails.size(), 2u) << "no reset mail arrived";
  EXPECT_TRUE(sink_.MailsTo("nobody@example.com").empty());
  EXPECT_EQ(sink_.Mails().size(), 2u);  // signup + reset, nothing else

  const Mail& reset_mail = bob_mails[1];
  const std::string code = CodeOf(reset_mail, "bob@example.com", 6);
  ASSERT_EQ(code.size(), 6u);

  const auto reset = client_->Post(
      "/api/forgot/reset",
      {{"email", "bob@example.com"}, {"otp", code}, {"new_password", "battery staple"}});
  ASSERT_EQ(reset.status, 200) << reset.body;
  EXPECT_TRUE(reset.json["message"].is_string()) << reset.body;

  EXPECT_EQ(Login("bob", "correct horse").status, 401);
  const auto login = Login("bob", "battery staple");
  ASSERT_EQ(login.status, 200) << login.body;
  EXPECT_EQ(client_->Get("/api/me", old_token).status, 401);  // revoked by the reset
  EXPECT_EQ(client_->Get("/api/me", login.json.value("token", "")).status, 200);

  // The unknown address's 202 gave it no usable reset either.
  const auto bogus = client_->Post(
      "/api/forgot/reset",
      {{"email", "nobody@example.com"}, {"otp", code}, {"new_password", "battery staple"}});
  EXPECT_EQ(bogus.status, 400) << bogus.body;
}

TEST_F(SmtpTest, RejectedRecipientLeavesNoAccount) {
  StartServer({}, {"smtp: sending to reject.carol@example.com failed"});  // the sink's 550
  const auto init = Initiate("carol", "reject.carol@example.com");
  ExpectUnavailable(init);
  EXPECT_TRUE(sink_.Mails().empty());
  ExpectNothingLeft("carol", "reject.carol@example.com");

  // No resend window was left to wait out: the same address fails the same way, not 429.
  ExpectUnavailable(Initiate("carol", "reject.carol@example.com"));

  // The username was never taken: a good address signs up with it.
  const auto good = Initiate("carol", "carol@example.com");
  ASSERT_EQ(good.status, 202) << good.body;
  const auto mails = sink_.WaitForMails("carol@example.com", 1);
  ASSERT_EQ(mails.size(), 1u);
  const auto verify = Verify("carol@example.com", CodeOf(mails[0], "carol@example.com", 6));
  ASSERT_EQ(verify.status, 201) << verify.body;
  const auto me = client_->Get("/api/me", verify.json.value("token", ""));
  EXPECT_EQ(me.json.value("email", ""), "carol@example.com") << me.body;
  // The rejected address still has nothing pending.
  EXPECT_EQ(Verify("reject.carol@example.com", "000000").ErrorCode(), "otp_invalid");
}

TEST_F(SmtpTest, ClosedSmtpPortLeavesNoAccount) {
  // Nothing listens on this port (the sink runs on another one).
  StartServer({{"SMTP_URL", "smtp://127.0.0.1:" + std::to_string(FreePort())}},
              {"smtp: sending to dave@example.com failed"});
  ExpectUnavailable(Initiate("dave", "dave@example.com"));
  ExpectNothingLeft("dave", "dave@example.com");
  ExpectUnavailable(Initiate("dave", "dave@example.com"));  // not 429
  // forgot/initiate for an unknown address sends nothing, so it still answers 202.
  EXPECT_EQ(client_->Post("/api/forgot/initiate", {{"email", "erin@example.com"}}).status, 202);
  EXPECT_TRUE(sink_.Mails().empty());
  // The server is still healthy.
  EXPECT_EQ(client_->Get("/healthz").status, 200);
}

TEST_F(SmtpTest, ForgotAnswers202EvenWhenTheMailIsRefused) {
  StartServer({}, {"smtp: sending to gus@example.com failed"});  // the sink is stopped
  ASSERT_FALSE(SignUpByMail("gus", "gus@example.com").empty());
  const auto unknown = client_->Post("/api/forgot/initiate", {{"email", "reject.x@example.com"}});
  EXPECT_EQ(unknown.status, 202) << unknown.body;

  // Stop the sink: every delivery now fails, also for the registered address.
  sink_.Stop();
  const auto known = client_->Post("/api/forgot/initiate", {{"email", "gus@example.com"}});
  EXPECT_EQ(known.status, 202) << known.body;
  EXPECT_EQ(unknown.body, known.body);  // a failed delivery does not tell registered apart
  EXPECT_TRUE(server_->WaitForLog("smtp: sending to gus@example.com failed"));
  // The code is kept, as for an unknown email, so the resend window treats both alike.
  const auto again_known = client_->Post("/api/forgot/initiate", {{"email", "gus@example.com"}});
  const auto again_unknown =
      client_->Post("/api/forgot/initiate", {{"email", "reject.x@example.com"}});
  EXPECT_EQ(again_known.status, 429) << again_known.body;
  EXPECT_EQ(again_unknown.status, 429) << again_unknown.body;
  EXPECT_EQ(again_known.body, again_unknown.body);
  // The undelivered code is no free pass: a guess is refused.
  EXPECT_EQ(
      client_
          ->Post("/api/forgot/reset",
                 {{"email", "gus@example.com"}, {"otp", "000000"}, {"new_password", "xyzxyzxyz"}})
          .ErrorCode(),
      "otp_invalid");
}

TEST_F(SmtpTest, CodeIsNotLogged) {
  StartServer({{"LOG_LEVEL", "debug"}});
  ASSERT_EQ(Initiate("frank", "frank@example.com").status, 202);
  auto mails = sink_.WaitForMails("frank@example.com", 1);
  ASSERT_EQ(mails.size(), 1u);
  const std::string signup_code = CodeOf(mails[0], "frank@example.com", 6);
  ASSERT_EQ(signup_code.size(), 6u);
  ASSERT_EQ(Verify("frank@example.com", signup_code).status, 201);
  ASSERT_EQ(client_->Post("/api/forgot/initiate", {{"email", "frank@example.com"}}).status, 202);
  mails = sink_.WaitForMails("frank@example.com", 2);
  ASSERT_EQ(mails.size(), 2u);
  const std::string reset_code = CodeOf(mails[1], "frank@example.com", 6);
  ASSERT_EQ(reset_code.size(), 6u);

  const std::string log = server_->Log();
  EXPECT_FALSE(server_->LatestCode("frank@example.com").has_value()) << log;
  EXPECT_EQ(log.find("otp: to="), std::string::npos) << log;
  for (const auto& code : {signup_code, reset_code}) {
    const std::regex standalone("(^|[^0-9])" + code + "([^0-9]|$)");
    EXPECT_FALSE(std::regex_search(log, standalone)) << "code " << code << " in the log:\n" << log;
  }
}

}  // namespace
}  // namespace mmchat::test
