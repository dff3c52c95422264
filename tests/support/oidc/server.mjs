// A real OAuth 2.0 / OpenID Connect authorization server (npm `oidc-provider`) for sealflow's
// tests. Started by tests/support/oauth_server.py; never used outside tests.
//
//   node server.mjs '<json>'   with json = {
//     certFile, keyFile,             TLS leaf for 127.0.0.1 (the fixture's test CA signs it)
//     clients: [...],                oidc-provider client metadata, as given
//     accessTokenTTL: 60,            seconds, so tests can exercise expiry
//     resource: {url, scope}         optional: a resource server for client credentials
//     adminKey                       bearer key for the test-only route below
//   }
//
// It listens on 127.0.0.1 on a port the OS picks (no free-port race), and only then builds
// the Provider, because the issuer must name that port. Then it prints one line:
//   READY {"issuer": "...", "port": N}
//
// Interactions (login, consent) are answered at once, without a form: the account is the
// authorization request's login_hint (default "test-user"), and login_hint=deny makes the
// "user" refuse (access_denied), so tests can drive the redirect's error path too.
//
// POST /test/revoke-grants?client_id=X (Authorization: Bearer <adminKey>) revokes every grant
// the client holds, with its access and refresh tokens, through the provider's own models:
// what an end-to-end test needs when the tokens are sealed inside sealflow and it cannot
// name them to the revocation endpoint.
import { generateKeyPair, exportJWK } from 'jose';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import Provider from 'oidc-provider';

const options = JSON.parse(process.argv[2] ?? process.env.OIDC_TEST_CONFIG ?? '{}');

async function signingKeys() {
  // Fresh keys per run: nothing signed by one test server validates against another.
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  return { keys: [{ ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig' }] };
}

function configuration(jwks) {
  const resource = options.resource;
  return {
    clients: options.clients,
    // The one signing key is ES256 (fast to make); RS256 is the default, so name it.
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    jwks,
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    // The account is the login_hint (default "test-user"); a hint with an "@" is also the
    // account's verified e-mail address, else "<hint>@example.test" is.
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      claims: async () => ({
        sub,
        email: sub.includes('@') ? sub : `${sub}@example.test`,
        email_verified: true,
        name: `Test ${sub.split('@')[0]}`,
      }),
    }),
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    // Scope claims in the id_token too (not only at userinfo), as most providers do.
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false }, // replaced by the automatic answer below
      clientCredentials: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      // Open dynamic registration, so a test can add a client whose redirect_uri names a
      // port it only learns later (an e2e `sealflow serve`).
      registration: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (_ctx, indicator) => {
          if (!resource || indicator !== resource.url) {
            throw new Provider.errors.InvalidTarget();
          }
          return {
            scope: resource.scope,
            audience: resource.url,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    // PKCE on every authorization code request, public or confidential (RFC 9700 2.1.1).
    pkce: { required: () => true },
    // Rotate on every use, so a test can see the new token and the old one refused.
    rotateRefreshToken: () => true,
    // A refresh token for any client allowed the grant, without offline_access + consent.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: {
      AccessToken: options.accessTokenTTL ?? 60,
      ClientCredentials: options.accessTokenTTL ?? 60,
      AuthorizationCode: 60,
      RefreshToken: 24 * 3600,
      Grant: 24 * 3600,
      Interaction: 600,
      Session: 3600,
      IdToken: 3600,
    },
  };
}

// Every authorization code starts a grant; rotated refresh tokens keep its id.
const grantsByClient = new Map();

async function revokeGrants(provider, ctx) {
  if (!options.adminKey || ctx.get('authorization') !== `Bearer ${options.adminKey}`) {
    ctx.status = 401;
    return;
  }
  const grantIds = grantsByClient.get(ctx.query.client_id) ?? new Set();
  for (const grantId of grantIds) {
    await provider.AccessToken.revokeByGrantId(grantId);
    await provider.RefreshToken.revokeByGrantId(grantId);
    await provider.Grant.adapter.destroy(grantId);
  }
  grantsByClient.delete(ctx.query.client_id);
  ctx.body = { revoked: grantIds.size };
}

// Answers login then consent (each is one redirect round trip) with no form.
async function interact(provider, ctx) {
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session } = details;
  let result;
  if (params.login_hint === 'deny') {
    result = { error: 'access_denied', error_description: 'the test user refused' };
  } else if (prompt.name === 'login') {
    result = { login: { accountId: params.login_hint || 'test-user' } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
    mergeWithLastSubmission: true,
  });
  ctx.redirect(returnTo);
}

async function main() {
  const tls = { cert: readFileSync(options.certFile), key: readFileSync(options.keyFile) };
  const server = createServer(tls);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const issuer = `https://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration(await signingKeys()));
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  provider.on('authorization_code.saved', (code) => {
    if (!grantsByClient.has(code.clientId)) grantsByClient.set(code.clientId, new Set());
    grantsByClient.get(code.clientId).add(code.grantId);
  });
  provider.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path.startsWith('/interaction/')) {
      await interact(provider, ctx);
    } else if (ctx.method === 'POST' && ctx.path === '/test/revoke-grants') {
      await revokeGrants(provider, ctx);
    } else {
      await next();
    }
  });
  server.on('request', provider.callback());
  console.log(`READY ${JSON.stringify({ issuer, port })}`);
}

// The fixture closes stdin/kills us at teardown; exit promptly either way.
process.on('SIGTERM', () => process.exit(0));
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
