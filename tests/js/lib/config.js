'use strict';
// The channel configuration shared by the SDK tests.
//   chat:*     presence + join/leave pushed to everyone + history/recovery + client publish
//   small:*    history of 3 publications (recovery window exceeded after 3 missed)
//   private:*  nothing allowed for clients without a subscription token (-> 103)
//   nohist:*   subscribe allowed, no history, no presence (-> 108 for history)
//   (no ns)    like chat

const chatOptions = {
  presence: true,
  join_leave: true,
  force_push_join_leave: true,
  history_size: 100,
  history_ttl: '300s',
  force_recovery: true,
  allow_subscribe_for_client: true,
  allow_publish_for_subscriber: true,
  allow_presence_for_subscriber: true,
  allow_history_for_subscriber: true,
};

function testConfig(extra = {}) {
  return {
    client: { ping_interval: '25s', pong_timeout: '8s' },
    channel: {
      without_namespace: { ...chatOptions },
      namespaces: [
        { name: 'chat', ...chatOptions },
        {
          name: 'small',
          history_size: 3,
          history_ttl: '300s',
          force_recovery: true,
          allow_subscribe_for_client: true,
          allow_history_for_subscriber: true,
        },
        { name: 'private', presence: true, history_size: 10, history_ttl: '300s' },
        { name: 'nohist', allow_subscribe_for_client: true, allow_publish_for_subscriber: true },
      ],
    },
    ...extra,
  };
}

module.exports = { testConfig, chatOptions };
