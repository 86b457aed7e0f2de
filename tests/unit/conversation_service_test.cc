// domain::ConversationService against the real SQLite store on a temporary file, a recording
// event bus and a hand-moved clock: creation, every permission rule, promotion, events and the
// reader's view (unread count, read marker, last message with status).
#include "domain/conversation_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "chat_fakes.h"

namespace mmchat::domain {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

constexpr TimeMs kSec = 1000;

std::vector<int64_t> Ids(const Conversation& c) {
  std::vector<int64_t> out;
  for (const auto& p : c.participants) out.push_back(p.user_id);
  return out;
}

std::vector<int64_t> Ids(const std::vector<Conversation>& cs) {
  std::vector<int64_t> out;
  for (const auto& c : cs) out.push_back(c.id);
  return out;
}

Role RoleOf(const Conversation& c, int64_t user) {
  const Participant* p = c.Find(user);
  EXPECT_NE(p, nullptr) << "user " << user << " is not a participant";
  return p ? p->role : Role::kMember;
}

class ConversationServiceTest : public test::ChatFixture {
 protected:
  void SetUp() override {
    ChatFixture::SetUp();
    alice_ = NewUser("alice");
    bob_ = NewUser("bob");
    carol_ = NewUser("carol");
    dave_ = NewUser("dave");
  }

  int64_t alice_ = 0, bob_ = 0, carol_ = 0, dave_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Private conversations
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationServiceTest, CreatePrivateIsIdempotentAndAnnouncesOnlyTheNewOne) {
  auto first = convs_->CreatePrivate(alice_, bob_);
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_TRUE(first->second);
  const Conversation& c = first->first;
  EXPECT_GT(c.id, 0);
  EXPECT_EQ(c.type, ConversationType::kPrivate);
  EXPECT_FALSE(c.name.has_value());
  EXPECT_THAT(Ids(c), UnorderedElementsAre(alice_, bob_));
  EXPECT_EQ(c.created_at, clock_.now);
  EXPECT_FALSE(c.last_message.has_value());
  EXPECT_EQ(c.unread_count, 0);

  auto changed = bus_.Of<ConversationChanged>();
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].conversation.id, c.id);
  EXPECT_THAT(Ids(changed[0].conversation), UnorderedElementsAre(alice_, bob_));

  // Again, from either side: the same conversation, not created, no new event.
  clock_.Advance(kSec);
  auto again = convs_->CreatePrivate(alice_, bob_);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->second);
  EXPECT_EQ(again->first.id, c.id);
  auto reverse = convs_->CreatePrivate(bob_, alice_);
  ASSERT_TRUE(reverse.ok());
  EXPECT_FALSE(reverse->second);
  EXPECT_EQ(reverse->first.id, c.id);
  EXPECT_EQ(bus_.Of<ConversationChanged>().size(), 1u);
  EXPECT_EQ(bus_.All().size(), 1u);

  // Another pair is another conversation.
  auto other = convs_->CreatePrivate(alice_, carol_);
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->second);
  EXPECT_NE(other->first.id, c.id);
  EXPECT_EQ(bus_.Of<ConversationChanged>().size(), 2u);
}

TEST_F(ConversationServiceTest, CreatePrivateWithYourselfIsInvalid) {
  auto r = convs_->CreatePrivate(alice_, alice_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidRequest);
  EXPECT_TRUE(bus_.All().empty());
  auto list = convs_->List(alice_);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST_F(ConversationServiceTest, CreatePrivateWithUnknownUserIsNotFound) {
  auto r = convs_->CreatePrivate(alice_, dave_ + 1000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(bus_.All().empty());
  auto list = convs_->List(alice_);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

// ---------------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationServiceTest, CreateGroupMakesTheCreatorAdminAndMembersMembers) {
  // The creator and repeated ids are taken once.
  auto r = convs_->CreateGroup(alice_, "team", {bob_, alice_, carol_, bob_});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->type, ConversationType::kGroup);
  EXPECT_EQ(r->name, "team");
  EXPECT_EQ(r->created_by, alice_);
  EXPECT_THAT(Ids(*r), UnorderedElementsAre(alice_, bob_, carol_));
  EXPECT_EQ(RoleOf(*r, alice_), Role::kAdmin);
  EXPECT_EQ(RoleOf(*r, bob_), Role::kMember);
  EXPECT_EQ(RoleOf(*r, carol_), Role::kMember);
  EXPECT_EQ(r->Find(dave_), nullptr);
  EXPECT_EQ(r->Find(bob_)->username, "bob");

  auto changed = bus_.Of<ConversationChanged>();
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].conversation.id, r->id);
  EXPECT_THAT(Ids(changed[0].conversation), UnorderedElementsAre(alice_, bob_, carol_));
}

TEST_F(ConversationServiceTest, CreateGroupAloneIsAllowed) {
  auto r = convs_->CreateGroup(alice_, "notes", {});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_THAT(Ids(*r), ElementsAre(alice_));
  EXPECT_EQ(RoleOf(*r, alice_), Role::kAdmin);
}

TEST_F(ConversationServiceTest, CreateGroupValidatesTheName) {
  std::string e_acute_100;
  for (int i = 0; i < 100; ++i) e_acute_100 += "\xC3\xA9";  // 100 code points, 200 bytes
  for (const std::string& bad :
       {std::string(), std::string(101, 'x'), std::string("a\xFFz"), e_acute_100 + "x"}) {
    auto r = convs_->CreateGroup(alice_, bad, {bob_});
    ASSERT_FALSE(r.ok()) << "name of " << bad.size() << " bytes";
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidRequest);
  }
  EXPECT_TRUE(bus_.All().empty());
  auto list = convs_->List(alice_);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());

  for (const std::string& good : {std::string("x"), std::string(100, 'x'), e_acute_100}) {
    auto r = convs_->CreateGroup(alice_, good, {bob_});
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->name, good);
  }
}

TEST_F(ConversationServiceTest, CreateGroupWithUnknownMemberIsNotFoundAndCreatesNothing) {
  auto r = convs_->CreateGroup(alice_, "team", {bob_, dave_ + 1000});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(bus_.All().empty());
  for (int64_t u : {alice_, bob_}) {
    auto list = convs_->List(u);
    ASSERT_TRUE(list.ok());
    EXPECT_TRUE(list->empty());
  }
}

// ---------------------------------------------------------------------------------------------
// Access
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationServiceTest, GetIsNotFoundForNoneAndForbiddenForOutsiders) {
  const Conversation g = Group(alice_, {bob_});
  auto missing = convs_->Get(alice_, g.id + 1000);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  auto outsider = convs_->Get(carol_, g.id);
  EXPECT_EQ(outsider.status().code(), StatusCode::kForbidden);
  auto member = convs_->Get(bob_, g.id);
  ASSERT_TRUE(member.ok());
  EXPECT_EQ(member->id, g.id);
}

// ---------------------------------------------------------------------------------------------
// Rename
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationServiceTest, RenamePermissions) {
  const Conversation g = Group(alice_, {bob_});
  const Conversation p = Private(alice_, bob_);
  bus_.Clear();

  EXPECT_EQ(convs_->Rename(alice_, g.id + 1000, "x").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(convs_->Rename(carol_, g.id, "x").status().code(), StatusCode::kForbidden);
  EXPECT_EQ(convs_->Rename(bob_, g.id, "x").status().code(), StatusCode::kForbidden);
  EXPECT_EQ(convs_->Rename(alice_, p.id, "x").status().code(), StatusCode::kInvalidRequest);
  EXPECT_EQ(convs_->Rename(alice_, g.id, "").status().code(), StatusCode::kInvalidRequest);
  EXPECT_EQ(convs_->Rename(alice_, g.id, std::string(101, 'n')).status().code(),
            StatusCode::kInvalidRequest);
  EXPECT_TRUE(bus_.All().empty());
  EXPECT_EQ(Stored(g.id).name, "team");
  EXPECT_FALSE(Stored(p.id).name.has_value());

  auto r = convs_->Rename(alice_, g.id, "renamed");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->name, "renamed");
  EXPECT_EQ(Stored(g.id).name, "renamed");
  auto changed = bus_.Of<ConversationChanged>();
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].conversation.name, "renamed");
  EXPECT_THAT(Ids(changed[0].conversation), UnorderedElementsAre(alice_, bob_));
}

// ---------------------------------------------------------------------------------------------
// AddParticipant
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationServiceTest, AddParticipantPermissions) {
  const Conversation g = Group(alice_, {bob_});
  const Conversation p = Private(alice_, bob_);
  bus_.Clear();

  EXPECT_EQ(convs_->AddParticipant(alice_, g.id + 1000, carol_, std::nullopt).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(convs_->AddParticipant(carol_, g.id, carol_, std::nullopt).status().code(),
            StatusCode::kForbidden);
  EXPECT_EQ(convs_->AddParticipant(bob_, g.id, carol_, std::nullopt).status().code(),
            StatusCode::kForbidden);
  EXPECT_EQ(convs_->AddParticipant(alice_, p.id, carol_, std::nullopt).status().code(),
            StatusCode::kInvalidRequest);
  EXPECT_EQ(convs_->AddParticipant(alice_, g.id, bob_, std::nullopt).status().code(),
            StatusCode::kConflict);
  EXPECT_EQ(convs_->AddParticipant(alice_, g.id, alice_, Role::kAdmin).status().code(),
            StatusCode::kConflict);
  EXPECT_EQ(convs_->AddParticipant(alice_, g.id, dave_ + 1000, std::nullopt).status().code(),
            StatusCode::kNotFound);
  EXPECT_TRUE(bus_.All().empty());
  EXPECT_THAT(Ids(Stored(g.id)), UnorderedElementsAre(alice_, bob_));
  EXPECT_THAT(Ids(Stored(p.id)), UnorderedElementsAre(alice_, bob_));
}

TEST_F(ConversationServiceTest, AddParticipantDefaultsToMemberAndAnnouncesTheNewList) {
  const Conversation g = Group(alice_, {bob_});
  bus_.Clear();

  auto r = convs_->AddParticipant(alice_, g.id, carol_, std::nullopt);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_THAT(Ids(*r), UnorderedElementsAre(alice_, bob_, carol_));
  EXPECT_EQ(RoleOf(*r, carol_), Role::kMember);
  auto changed = bus_.Of<ConversationChanged>();
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_THAT(Ids(changed[0].conversation), UnorderedElementsAre(alice_, bob_, carol_));

  auto admin = convs_->AddParticipant(alice_, g.id, dave_, Role::kAdmin);
  ASSERT_TRUE(admin.ok()) << admin.status().message();
  EXPECT_EQ(RoleOf(*admin, dave_), Role::kAdmin);
  EXPECT_EQ(RoleOf(Stored(g.id), dave_), Role::kAdmin);
  changed = bus_.Of<ConversationChanged>();
  ASSERT_EQ(changed.size(), 2u);
  EXPECT_THAT(Ids(changed[1].conversation), UnorderedElementsAre(alice_, bob_, carol_, dave_));

  // The new participant sees the conversation now.
  auto seen = convs_->Get(carol_, g.id);
  EXPECT_TRUE(seen.ok());
}

// ---------------------------------------------------------------------------------------------
// SetRole
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationServiceTest, SetRolePermissions) {
  const Conversation g = Group(alice_, {bob_});
  const Conversation p = Private(alice_, bob_);
  bus_.Clear();

  EXPECT_EQ(convs_->SetRole(alice_, g.id + 1000, bob_, Role::kAdmin).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(convs_->SetRole(carol_, g.id, bob_, Role::kAdmin).status().code(),
            StatusCode::kForbidden);
  EXPECT_EQ(convs_->SetRole(bob_, g.id, bob_, Role::kAdmin).status().code(),
            StatusCode::kForbidden);
  EXPECT_EQ(convs_->SetRole(alice_, p.id, bob_, Role::kAdmin).status().code(),
            StatusCode::kInvalidRequest);
  EXPECT_EQ(convs_->SetRole(alice_, g.id, carol_, Role::kAdmin).status().code(),
            StatusCode::kNotFound);
  EXPECT_TRUE(bus_.All().empty());
  EXPECT_EQ(RoleOf(Stored(g.id), bob_), Role::kMember);
}

TEST_F(ConversationServiceTest, DemotingTheOnlyAdminIsRefused) {
  const Conversation g = Group(alice_, {bob_});
  bus_.Clear();

  auto self = convs_->SetRole(alice_, g.id, alice_, Role::kMember);
  EXPECT_EQ(self.status().code(), StatusCode::kInvalidRequest);
  EXPECT_EQ(RoleOf(Stored(g.id), alice_), Role::kAdmin);
  EXPECT_TRUE(bus_.All().empty());

  // Promote bob; now either admin may step down, but not the last one.
  auto promoted = convs_->SetRole(alice_, g.id, bob_, Role::kAdmin);
  ASSERT_TRUE(promoted.ok()) << promoted.status().message();
  EXPECT_EQ(RoleOf(*promoted, bob_), Role::kAdmin);
  auto changed = bus_.Of<ConversationChanged>();
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(RoleOf(changed[0].conversation, bob_), Role::kAdmin);

  auto step_down = convs_->SetRole(alice_, g.id, alice_, Role::kMember);
  ASSERT_TRUE(step_down.ok()) << step_down.status().message();
  EXPECT_EQ(RoleOf(Stored(g.id), alice_), Role::kMember);

  auto last = convs_->SetRole(bob_, g.id, bob_, Role::kMember);
  EXPECT_EQ(last.status().code(), StatusCode::kInvalidRequest);
  EXPECT_EQ(RoleOf(Stored(g.id), bob_), Role::kAdmin);

  // The demoted alice is no admin any more.
  EXPECT_EQ(convs_->SetRole(alice_, g.id, alice_, Role::kAdmin).status().code(),
            StatusCode::kForbidden);
}

// ---------------------------------------------------------------------------------------------
// RemoveParticipant
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationServiceTest, RemoveParticipantPermissions) {
  const Conversation g = Group(alice_, {bob_, carol_});
  const Conversation p = Private(alice_, bob_);
  bus_.Clear();

  EXPECT_EQ(convs_->RemoveParticipant(alice_, g.id + 1000, bob_).code(), StatusCode::kNotFound);
  EXPECT_EQ(convs_->RemoveParticipant(dave_, g.id, bob_).code(), StatusCode::kForbidden);
  EXPECT_EQ(convs_->RemoveParticipant(dave_, g.id, dave_).code(), StatusCode::kForbidden);
  EXPECT_EQ(convs_->RemoveParticipant(bob_, g.id, carol_).code(), StatusCode::kForbidden);
  EXPECT_EQ(convs_->RemoveParticipant(bob_, g.id, alice_).code(), StatusCode::kForbidden);
  EXPECT_EQ(convs_->RemoveParticipant(alice_, p.id, bob_).code(), StatusCode::kInvalidRequest);
  EXPECT_EQ(convs_->RemoveParticipant(bob_, p.id, bob_).code(), StatusCode::kInvalidRequest);
  EXPECT_EQ(convs_->RemoveParticipant(alice_, g.id, dave_).code(), StatusCode::kNotFound);
  EXPECT_TRUE(bus_.All().empty());
  EXPECT_THAT(Ids(Stored(g.id)), UnorderedElementsAre(alice_, bob_, carol_));
  EXPECT_THAT(Ids(Stored(p.id)), UnorderedElementsAre(alice_, bob_));
}

TEST_F(ConversationServiceTest, AdminRemovesAMemberAndEventsTellBothSides) {
  const Conversation g = Group(alice_, {bob_, carol_});
  bus_.Clear();

  ASSERT_TRUE(convs_->RemoveParticipant(alice_, g.id, bob_).ok());
  EXPECT_THAT(Ids(Stored(g.id)), UnorderedElementsAre(alice_, carol_));

  auto all = bus_.All();
  ASSERT_EQ(all.size(), 2u);
  const auto* removed = std::get_if<ConversationRemoved>(&all[0]);
  ASSERT_NE(removed, nullptr);
  EXPECT_EQ(removed->conversation_id, g.id);
  EXPECT_EQ(removed->user_id, bob_);
  const auto* changed = std::get_if<ConversationChanged>(&all[1]);
  ASSERT_NE(changed, nullptr);
  EXPECT_EQ(changed->conversation.id, g.id);
  EXPECT_THAT(Ids(changed->conversation), UnorderedElementsAre(alice_, carol_));

  // The removed user sees nothing of it any more.
  EXPECT_EQ(convs_->Get(bob_, g.id).status().code(), StatusCode::kForbidden);
  auto list = convs_->List(bob_);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  // Removing again is not found.
  EXPECT_EQ(convs_->RemoveParticipant(alice_, g.id, bob_).code(), StatusCode::kNotFound);
}

TEST_F(ConversationServiceTest, AMemberMayLeave) {
  const Conversation g = Group(alice_, {bob_, carol_});
  bus_.Clear();

  ASSERT_TRUE(convs_->RemoveParticipant(carol_, g.id, carol_).ok());
  const Conversation after = Stored(g.id);
  EXPECT_THAT(Ids(after), UnorderedElementsAre(alice_, bob_));
  EXPECT_EQ(RoleOf(after, alice_), Role::kAdmin);
  EXPECT_EQ(RoleOf(after, bob_), Role::kMember);  // an admin remained: nobody promoted
  auto removed = bus_.Of<ConversationRemoved>();
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].user_id, carol_);
  auto changed = bus_.Of<ConversationChanged>();
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_THAT(Ids(changed[0].conversation), UnorderedElementsAre(alice_, bob_));
}

TEST_F(ConversationServiceTest, LastAdminLeavingPromotesTheEarliestJoinedMember) {
  const Conversation g = Group(alice_, {});
  // carol joins before bob although bob has the smaller user id.
  clock_.Advance(kSec);
  ASSERT_TRUE(convs_->AddParticipant(alice_, g.id, carol_, std::nullopt).ok());
  clock_.Advance(kSec);
  ASSERT_TRUE(convs_->AddParticipant(alice_, g.id, bob_, std::nullopt).ok());
  clock_.Advance(kSec);
  ASSERT_TRUE(convs_->AddParticipant(alice_, g.id, dave_, std::nullopt).ok());
  ASSERT_LT(bob_, carol_);
  {
    const Conversation before = Stored(g.id);
    ASSERT_LT(before.Find(carol_)->joined_at, before.Find(bob_)->joined_at);
  }
  bus_.Clear();

  ASSERT_TRUE(convs_->RemoveParticipant(alice_, g.id, alice_).ok());
  const Conversation after = Stored(g.id);
  EXPECT_THAT(Ids(after), ElementsAre(carol_, bob_, dave_));  // ordered by joined_at
  EXPECT_EQ(RoleOf(after, carol_), Role::kAdmin);
  EXPECT_EQ(RoleOf(after, bob_), Role::kMember);
  EXPECT_EQ(RoleOf(after, dave_), Role::kMember);
  auto changed = bus_.Of<ConversationChanged>();
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(RoleOf(changed[0].conversation, carol_), Role::kAdmin);

  // The promoted carol administers now.
  EXPECT_TRUE(convs_->Rename(carol_, g.id, "carol's").ok());
}

TEST_F(ConversationServiceTest, AdminRemovingTheOtherAdminPromotesNobody) {
  const Conversation g = Group(alice_, {bob_});
  ASSERT_TRUE(convs_->AddParticipant(alice_, g.id, carol_, Role::kAdmin).ok());
  ASSERT_TRUE(convs_->RemoveParticipant(carol_, g.id, alice_).ok());
  const Conversation after = Stored(g.id);
  EXPECT_EQ(RoleOf(after, carol_), Role::kAdmin);
  EXPECT_EQ(RoleOf(after, bob_), Role::kMember);
}

TEST_F(ConversationServiceTest, TheLastParticipantLeavingAnnouncesOnlyTheRemoval) {
  const Conversation g = Group(alice_, {});
  bus_.Clear();
  ASSERT_TRUE(convs_->RemoveParticipant(alice_, g.id, alice_).ok());
  auto all = bus_.All();
  ASSERT_EQ(all.size(), 1u);
  const auto* removed = std::get_if<ConversationRemoved>(&all[0]);
  ASSERT_NE(removed, nullptr);
  EXPECT_EQ(removed->conversation_id, g.id);
  EXPECT_EQ(removed->user_id, alice_);
  EXPECT_TRUE(Stored(g.id).participants.empty());
}

// ---------------------------------------------------------------------------------------------
// Listing and the reader's view
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationServiceTest, ListIsNewestActivityFirst) {
  const Conversation g1 = Group(alice_, {bob_}, "one");
  clock_.Advance(kSec);
  const Conversation g2 = Group(alice_, {carol_}, "two");
  clock_.Advance(kSec);
  const Conversation p = Private(alice_, dave_);
  clock_.Advance(kSec);
  Group(bob_, {carol_}, "not alice's");

  auto list = convs_->List(alice_);
  ASSERT_TRUE(list.ok());
  EXPECT_THAT(Ids(*list), ElementsAre(p.id, g2.id, g1.id));

  // A message makes g1 the newest.
  clock_.Advance(kSec);
  Send(bob_, g1.id, "hello");
  list = convs_->List(alice_);
  ASSERT_TRUE(list.ok());
  EXPECT_THAT(Ids(*list), ElementsAre(g1.id, p.id, g2.id));

  // So does a rename.
  clock_.Advance(kSec);
  ASSERT_TRUE(convs_->Rename(alice_, g2.id, "two!").ok());
  list = convs_->List(alice_);
  ASSERT_TRUE(list.ok());
  EXPECT_THAT(Ids(*list), ElementsAre(g2.id, g1.id, p.id));

  // Bob's list: his own group and g1.
  auto bobs = convs_->List(bob_);
  ASSERT_TRUE(bobs.ok());
  ASSERT_EQ(bobs->size(), 2u);
  EXPECT_EQ((*bobs)[0].id, g1.id);
}

// The list takes each conversation from the ConversationCache: news keeps it current, and
// only which conversations and the caller's marker and unread count are read every time.
TEST_F(ConversationServiceTest, ListKeepsConversationsCurrentFromNews) {
  const Conversation g = Group(alice_, {bob_}, "team");
  auto list = convs_->List(alice_);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  // Renamed behind the cache's back (no news): the kept name shows until the entry expires.
  ASSERT_TRUE(store_->Rename(g.id, "quiet", clock_.now).ok());
  EXPECT_EQ(convs_->List(alice_)->front().name, std::optional<std::string>("team"));
  // A send is news: the last message, the order and the unread count show at once.
  clock_.Advance(kSec);
  const Conversation p = Private(alice_, carol_);
  clock_.Advance(kSec);
  const Message m = Send(bob_, g.id, "hello");
  list = convs_->List(alice_);
  ASSERT_TRUE(list.ok());
  EXPECT_THAT(Ids(*list), ElementsAre(g.id, p.id));
  ASSERT_TRUE((*list)[0].last_message.has_value());
  EXPECT_EQ((*list)[0].last_message->id, m.id);
  EXPECT_EQ((*list)[0].unread_count, 1);
  EXPECT_EQ((*list)[0].name, std::optional<std::string>("team"));
  clock_.Advance(ConversationCache::kDefaultTtlMs);
  EXPECT_EQ(convs_->List(alice_)->front().name, std::optional<std::string>("quiet"));
}

TEST_F(ConversationServiceTest, ListTrustsTheStoreForWhoseConversationItIs) {
  const Conversation g = Group(alice_, {bob_}, "team");
  ASSERT_EQ(convs_->List(alice_)->size(), 1u);  // kept with alice and bob only
  // Carol joins and bob leaves behind the cache's back: carol's list reads the kept
  // conversation again (it does not know her yet), bob's no longer holds it.
  ASSERT_EQ(*store_->AddParticipant(g.id, carol_, Role::kMember, clock_.now),
            MembershipOutcome::kDone);
  ASSERT_EQ(*store_->RemoveParticipant(g.id, bob_, clock_.now), MembershipOutcome::kDone);
  auto carols = convs_->List(carol_);
  ASSERT_TRUE(carols.ok());
  ASSERT_EQ(carols->size(), 1u);
  EXPECT_THAT(Ids(carols->front()), ElementsAre(alice_, carol_));
  auto bobs = convs_->List(bob_);
  ASSERT_TRUE(bobs.ok());
  EXPECT_TRUE(bobs->empty());
}

TEST_F(ConversationServiceTest, ListShowsAProfileChangeOnItsNews) {
  const Conversation g = Group(alice_, {bob_}, "team");
  ASSERT_EQ(convs_->List(alice_)->front().Find(bob_)->username, "bob");
  ProfileUpdate update;
  update.username = "robert";
  ASSERT_TRUE(store_->UpdateProfile(bob_, update).ok());
  EXPECT_EQ(convs_->List(alice_)->front().Find(bob_)->username, "bob");  // no news yet
  bus_.Publish(UserChanged{bob_});
  EXPECT_EQ(convs_->List(alice_)->front().Find(bob_)->username, "robert");
  (void)g;
}

TEST_F(ConversationServiceTest, ReaderFieldsUnreadMarkerAndLastMessageStatus) {
  const Conversation p = Private(alice_, bob_);
  const Message m1 = Send(alice_, p.id, "one");
  const Message m2 = Send(alice_, p.id, "two");
  const Message m3 = Send(alice_, p.id, "three");

  // Bob has read nothing: three unread, last message "three", only sent.
  auto bob_view = convs_->Get(bob_, p.id);
  ASSERT_TRUE(bob_view.ok());
  EXPECT_EQ(bob_view->unread_count, 3);
  EXPECT_EQ(bob_view->last_read_message_id, 0);
  ASSERT_TRUE(bob_view->last_message.has_value());
  EXPECT_EQ(bob_view->last_message->id, m3.id);
  EXPECT_EQ(bob_view->last_message->content, "three");
  EXPECT_EQ(bob_view->last_message->status, MessageStatus::kSent);

  // Alice's own messages are not unread; sending moved her marker.
  auto alice_view = convs_->Get(alice_, p.id);
  ASSERT_TRUE(alice_view.ok());
  EXPECT_EQ(alice_view->unread_count, 0);
  EXPECT_EQ(alice_view->last_read_message_id, m3.id);
  EXPECT_EQ(alice_view->last_message->status, MessageStatus::kSent);

  // Delivered to bob (in memory, not yet flushed): "delivered".
  ASSERT_TRUE(tracker_.Advance(p.id, bob_, m3.id, 0));
  alice_view = convs_->Get(alice_, p.id);
  ASSERT_TRUE(alice_view.ok());
  EXPECT_EQ(alice_view->last_message->status, MessageStatus::kDelivered);

  // Bob reads up to m2: one unread left; the last message is still only delivered.
  ASSERT_TRUE(store_->MoveReadMarker(p.id, bob_, m2.id, clock_.now).ok());
  bob_view = convs_->Get(bob_, p.id);
  ASSERT_TRUE(bob_view.ok());
  EXPECT_EQ(bob_view->unread_count, 1);
  EXPECT_EQ(bob_view->last_read_message_id, m2.id);
  alice_view = convs_->Get(alice_, p.id);
  EXPECT_EQ(alice_view->last_message->status, MessageStatus::kDelivered);

  // Bob reads everything: "read", and the List view agrees with Get.
  ASSERT_TRUE(store_->MoveReadMarker(p.id, bob_, m3.id, clock_.now).ok());
  auto list = convs_->List(alice_);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  ASSERT_TRUE((*list)[0].last_message.has_value());
  EXPECT_EQ((*list)[0].last_message->status, MessageStatus::kRead);
  auto bob_list = convs_->List(bob_);
  ASSERT_TRUE(bob_list.ok());
  ASSERT_EQ(bob_list->size(), 1u);
  EXPECT_EQ((*bob_list)[0].unread_count, 0);
  EXPECT_EQ((*bob_list)[0].last_read_message_id, m3.id);

  // Bob answers: unread for alice, and bob's marker moved to his own message.
  const Message m4 = Send(bob_, p.id, "four");
  alice_view = convs_->Get(alice_, p.id);
  EXPECT_EQ(alice_view->unread_count, 1);
  EXPECT_EQ(alice_view->last_message->id, m4.id);
  EXPECT_EQ(alice_view->last_message->status, MessageStatus::kSent);
  bob_view = convs_->Get(bob_, p.id);
  EXPECT_EQ(bob_view->last_read_message_id, m4.id);
  EXPECT_EQ(bob_view->unread_count, 0);
  (void)m1;
}

TEST_F(ConversationServiceTest, StatusNeedsEveryOtherParticipant) {
  const Conversation g = Group(alice_, {bob_, carol_});
  const Message m = Send(alice_, g.id, "hi all");
  Conversation c = Stored(g.id);
  EXPECT_EQ(StatusOf(m, c, tracker_), MessageStatus::kSent);

  tracker_.Advance(g.id, bob_, m.id, 0);
  EXPECT_EQ(StatusOf(m, c, tracker_), MessageStatus::kSent);  // carol has not got it
  tracker_.Advance(g.id, carol_, m.id, 0);
  EXPECT_EQ(StatusOf(m, c, tracker_), MessageStatus::kDelivered);

  ASSERT_TRUE(store_->MoveReadMarker(g.id, bob_, m.id, clock_.now).ok());
  c = Stored(g.id);
  EXPECT_EQ(StatusOf(m, c, tracker_), MessageStatus::kDelivered);  // carol has not read it
  ASSERT_TRUE(store_->MoveReadMarker(g.id, carol_, m.id, clock_.now).ok());
  c = Stored(g.id);
  EXPECT_EQ(StatusOf(m, c, tracker_), MessageStatus::kRead);
}

TEST_F(ConversationServiceTest, ReadingCountsAsDeliveredAndAloneIsSent) {
  const Conversation p = Private(alice_, bob_);
  const Message m = Send(alice_, p.id, "hi");
  // A read marker without any delivery mark still means "read".
  ASSERT_TRUE(store_->MoveReadMarker(p.id, bob_, m.id, clock_.now).ok());
  EXPECT_EQ(StatusOf(m, Stored(p.id), tracker_), MessageStatus::kRead);

  // Nobody else to receive it: "sent".
  const Conversation solo = Group(carol_, {}, "solo");
  const Message s = Send(carol_, solo.id, "note to self");
  EXPECT_EQ(StatusOf(s, Stored(solo.id), tracker_), MessageStatus::kSent);
}

}  // namespace
}  // namespace mmchat::domain
