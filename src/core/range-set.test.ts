import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RangeSet } from './range-set.js';

test('range set: add merges what touches or overlaps and counts only new bytes', () => {
  const s = new RangeSet();
  assert.equal(s.add(10, 20), 10);
  assert.equal(s.add(30, 40), 10);
  assert.equal(s.add(20, 25), 5); // touches [10, 20): merged
  assert.equal(s.count, 2);
  assert.equal(s.add(15, 35), 5); // bridges both, 5 new bytes
  assert.equal(s.count, 1);
  assert.deepEqual(s.first(), [10, 40]);
  assert.equal(s.add(12, 18), 0);
  assert.equal(s.add(5, 5), 0);
  assert.equal(s.bytes, 30);
  // out of order, below and above
  assert.equal(s.add(0, 2), 2);
  assert.equal(s.add(50, 60), 10);
  assert.equal(s.count, 3);
  assert.equal(s.bytes, 42);
});

test('range set: gaps are the uncovered parts, in order', () => {
  const s = new RangeSet();
  s.add(10, 20);
  s.add(30, 40);
  assert.deepEqual(s.gaps(0, 50), [[0, 10], [20, 30], [40, 50]]);
  assert.deepEqual(s.gaps(12, 35), [[20, 30]]);
  assert.deepEqual(s.gaps(12, 18), []);
  assert.deepEqual(s.gaps(20, 30), [[20, 30]]);
});

test('range set: removeBelow drops whole ranges and cuts the one it falls in', () => {
  const s = new RangeSet();
  s.add(0, 10);
  s.add(20, 30);
  s.add(40, 50);
  s.removeBelow(25);
  assert.deepEqual(s.first(), [25, 30]);
  assert.equal(s.count, 2);
  assert.equal(s.bytes, 15);
  s.removeBelow(35); // between ranges
  assert.deepEqual(s.first(), [40, 50]);
  assert.equal(s.bytes, 10);
  s.removeBelow(50);
  assert.equal(s.first(), undefined);
  assert.equal(s.bytes, 0);
  s.add(1, 3);
  s.clear();
  assert.equal(s.count, 0);
  assert.equal(s.bytes, 0);
});
