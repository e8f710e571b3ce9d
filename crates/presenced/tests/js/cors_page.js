// A web page of a Graph user reading one presence with the legacy Graph
// client's browser bundle (the global MicrosoftGraph), pointed at presenced
// by its base URL and customHosts. presenced, the token and the user come
// in the page's query string. The page shows the presence, or the failure.

const query = new URLSearchParams(location.search);
const presenced = query.get("presenced");
const token = query.get("token");
const client = MicrosoftGraph.Client.init({
  authProvider: (done) => done(null, token),
  baseUrl: presenced,
  customHosts: new Set([new URL(presenced).hostname]),
});
const result = document.getElementById("result");
try {
  const presence = await client.api(`/users/${query.get("user")}/presence`).get();
  result.textContent = `shown: ${presence.availability}/${presence.activity}`;
} catch (error) {
  result.textContent = `failed: ${error.statusCode} ${error.code} ${error.message}`;
}
result.dataset.done = "true";
