#include "mail/smtp_sender.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <memory>

#include "common/utf8.h"

namespace mmchat::mail {
namespace {

struct Upload {
  const std::string* data;
  size_t offset = 0;
};

size_t ReadChunk(char* buffer, size_t size, size_t nitems, void* userp) {
  auto* up = static_cast<Upload*>(userp);
  const size_t n = std::min(size * nitems, up->data->size() - up->offset);
  std::memcpy(buffer, up->data->data() + up->offset, n);
  up->offset += n;
  return n;
}

void InitCurlOnce() {
  static const bool done = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  (void)done;
}

}  // namespace

std::string FormatMessage(const std::string& from, const domain::OutgoingMail& mail,
                          long long unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char date[64];
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  std::string msg;
  msg += "Date: " + std::string(date) + "\r\n";
  msg += "From: MmChat <" + from + ">\r\n";
  msg += "To: <" + mail.to + ">\r\n";
  msg += "Subject: " + mail.subject + "\r\n";
  msg += "MIME-Version: 1.0\r\n";
  msg += "Content-Type: text/plain; charset=utf-8\r\n";
  msg += "Content-Transfer-Encoding: 8bit\r\n";
  msg += "\r\n";
  msg += mail.body;
  return msg;
}

SmtpSender::SmtpSender(std::string url, std::string from)
    : url_(std::move(url)), from_(std::move(from)) {
  InitCurlOnce();
}

Status SmtpSender::Send(const domain::OutgoingMail& mail) {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return Status::Unavailable("could not send the verification code");
  const std::string payload = FormatMessage(from_, mail, std::time(nullptr));
  Upload upload{&payload};
  const std::string from = "<" + from_ + ">";
  const std::string to = "<" + mail.to + ">";
  curl_slist* rcpt = curl_slist_append(nullptr, to.c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> rcpt_guard(rcpt, curl_slist_free_all);
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url_.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_FROM, from.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadChunk);
  curl_easy_setopt(c, CURLOPT_READDATA, &upload);
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  // smtps:// is TLS from the start. For smtp://, STARTTLS is used when offered, and required
  // when the URL carries credentials, so that a man in the middle cannot strip it to read them.
  const bool has_credentials = url_.find('@') != std::string::npos;
  curl_easy_setopt(c, CURLOPT_USE_SSL,
                   static_cast<long>(has_credentials ? CURLUSESSL_ALL : CURLUSESSL_TRY));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // no SIGALRM from worker threads
  char detail[CURL_ERROR_SIZE] = "";          // e.g. "RCPT failed: 550", more telling than the code
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, detail);
  const CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    // The address is the client's text and the detail may quote the mail server's reply.
    spdlog::error("smtp: sending to {} failed: {} ({})", LogSafe(mail.to), curl_easy_strerror(rc),
                  LogSafe(detail));
    return Status::Unavailable("could not send the verification code; try again later");
  }
  spdlog::info("smtp: sent {} to {}", mail.subject, LogSafe(mail.to));
  return Status::Ok();
}

}  // namespace mmchat::mail
