// Stream slots shared by every console tab of this browser (Web Locks). Over HTTP/1.1 a browser
// opens at most ~6 connections per origin; an EventSource holds one for as long as it is open,
// so eight console tabs would stall every other request (a POST "hangs"). A tab streams only
// while it holds one of SLOTS locks, which leaves connections free for requests. A tab the person
// uses (sends from, focuses) takes a slot from another tab if none is free; that tab pauses and
// resumes from its last seq when it gets a slot back.

const SLOTS = 4;
const NAME = "worker-console-stream-";

let release = null; // resolves the held lock's promise: gives the slot back
let onLost = () => {};

export function onSlotLost(fn) {
  onLost = fn;
}

export function holding() {
  return release !== null || !navigator.locks;
}

function hold(name, options) {
  return new Promise((resolve) => {
    navigator.locks
      .request(name, options, (lock) => {
        if (!lock) {
          resolve(false);
          return undefined;
        }
        return new Promise((done) => {
          release = () => {
            release = null;
            done();
          };
          resolve(true);
        });
      })
      .catch(() => {
        // stolen by a tab the person is using: stop streaming here
        if (release) {
          release = null;
          onLost();
        }
        resolve(false);
      });
  });
}

export async function acquire(steal) {
  if (holding()) return true;
  for (let i = 0; i < SLOTS; i++) {
    if (await hold(NAME + i, { ifAvailable: true })) return true;
  }
  if (!steal) return false;
  const i = Math.floor(Math.random() * SLOTS);
  return hold(NAME + i, { steal: true });
}

export function giveBack() {
  if (release) release();
}
