// The chat page at "/": one static HTML file with inline CSS and JavaScript, no build step.
// It streams from /v1/chat/completions (fetch + Server-Sent Events) and shows the speed of each answer.
#include "server/http_server.h"

namespace specq::server {

const char* const kChatPageHtml = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>specq chat</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.3rem; margin-bottom: 0.3rem; }
  #model { color: #666; font-size: 0.9rem; }
  #messages { border: 1px solid #ddd; border-radius: 6px; min-height: 16rem; padding: 0.6rem; margin: 0.8rem 0; }
  .message { white-space: pre-wrap; margin: 0.4rem 0; padding: 0.4rem 0.6rem; border-radius: 6px; }
  .user { background: #e8f0fe; }
  .assistant { background: #f3f3f3; }
  .error { background: #fde8e8; color: #a00; }
  form { display: flex; gap: 0.5rem; }
  #prompt { flex: 1; min-height: 3rem; font: inherit; }
  #settings { margin-top: 0.6rem; font-size: 0.85rem; color: #444; display: flex; gap: 1rem; flex-wrap: wrap; }
  #settings input { width: 5rem; }
  #stats { margin-top: 0.5rem; font-size: 0.85rem; color: #333; }
</style>
</head>
<body>
<h1>specq chat</h1>
<div id="model"></div>
<div id="messages"></div>
<form id="form">
  <textarea id="prompt" placeholder="Ask something (Enter sends, Shift+Enter for a new line)"></textarea>
  <button id="send" type="submit">Send</button>
</form>
<div id="settings">
  <label>max tokens <input id="max-tokens" type="number" min="1" value="128"></label>
  <label>temperature <input id="temperature" type="number" min="0" max="2" step="0.1" value="0"></label>
  <label>API key <input id="api-key" type="password" style="width: 10rem"></label>
  <button id="clear" type="button">New chat</button>
</div>
<div id="stats">tokens/s: <span id="tps">-</span> · mean accepted length: <span id="mal">-</span>
  · tokens: <span id="ntok">-</span></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const conversation = [];
let busy = false;

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "message " + role;
  div.textContent = text;
  $("messages").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

async function loadModel() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    const body = await r.json();
    if (r.ok) $("model").textContent = "model: " + body.data[0].id + " · context " + body.data[0].max_context;
  } catch (e) { /* the page still works without the model name */ }
}

// Reads a Server-Sent Events body and calls onEvent with each "data:" payload.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n"))
        if (line.startsWith("data: ")) onEvent(line.slice(6));
    }
  }
}

async function send(text) {
  busy = true;
  $("send").disabled = true;
  conversation.push({ role: "user", content: text });
  addMessage("user", text);
  const answer = addMessage("assistant", "");
  answer.classList.add("streaming");
  let content = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({
        model: "specq", messages: conversation, stream: true, stream_options: { include_usage: true },
        max_tokens: Number($("max-tokens").value) || 128, temperature: Number($("temperature").value) || 0,
      }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || response.statusText);
    }
    await readEvents(response, (data) => {
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      for (const choice of chunk.choices || []) {
        if (choice.delta && choice.delta.content) {
          content += choice.delta.content;
          answer.textContent = content;
          answer.dataset.chunks = Number(answer.dataset.chunks || 0) + 1;
        }
      }
      if (chunk.timings) {
        $("tps").textContent = chunk.timings.tokens_per_second.toFixed(1);
        $("mal").textContent = chunk.timings.mean_accepted_length.toFixed(2);
      }
      if (chunk.usage) $("ntok").textContent = chunk.usage.completion_tokens;
    });
    conversation.push({ role: "assistant", content: content });
    answer.classList.add("done");
  } catch (e) {
    answer.className = "message error";
    answer.textContent = "error: " + e.message;
    conversation.pop();
  } finally {
    answer.classList.remove("streaming");
    busy = false;
    $("send").disabled = false;
  }
}

$("form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || busy) return;
  $("prompt").value = "";
  send(text);
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("form").requestSubmit();
  }
});
$("clear").addEventListener("click", () => {
  conversation.length = 0;
  $("messages").textContent = "";
});
loadModel();
</script>
</body>
</html>
)HTML";

}  // namespace specq::server
